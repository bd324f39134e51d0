"""Builds the FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.deps import AppState
from api.errors import install_error_handlers
from api.limits import BodySizeLimit, RateLimiter
from api.metrics import install_metrics
from api.routes import campaigns, files, health, jobs, web, webhooks
from models.db import make_engine, make_session_factory
from models.queue import Publisher
from models.settings import Settings
from models.storage import make_storage

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings, *, publisher: Publisher) -> FastAPI:
    engine = make_engine(settings.sqlalchemy_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="Animagine render farm",
        version="1",
        description="Submit prompt grids, poll them, fetch their images.",
        lifespan=lifespan,
    )
    app.state.farm = AppState(
        settings=settings,
        sessions=make_session_factory(engine),
        storage=make_storage(settings),
        publisher=publisher,
        limiter=RateLimiter(per_s=settings.rate_limit_per_s, redis_url=settings.broker_url),
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    install_metrics(app, sessions=app.state.farm.sessions, models=settings.models)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(campaigns.router)
    app.include_router(webhooks.router)
    app.include_router(files.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
