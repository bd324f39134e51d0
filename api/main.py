"""Builds the FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from api.deps import AppState
from api.errors import install_error_handlers
from api.fast_poll import PollFastPath, PollFrontDoor
from api.key_cache import KeyCache
from api.limits import BodySizeLimit, RateLimiter
from api.metrics import install_metrics
from api.routes import (
    admin,
    campaigns,
    files,
    health,
    job_control,
    jobs,
    prompts,
    refine,
    usage,
    web,
    web_control,
    web_files,
    web_refine,
    webhooks,
)
from models.db.session import make_engine, make_session_factory
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.infra.storage import make_storage
from models.service.submit import Submitter

STATIC_DIR = Path(__file__).resolve().parent / "static"


class FarmApi(FastAPI):
    """FastAPI, with polls of one job answered at the door (api/fast_poll.py)."""

    def __init__(self, front_door: PollFrontDoor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front_door = front_door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        polled = self.front_door.polled(scope)
        if polled is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front_door.serve(scope, receive, send, polled)


def create_app(settings: Settings, *, publisher: Publisher) -> FastAPI:
    engine = make_engine(settings.sqlalchemy_url, **settings.engine_kwargs("api"))
    key_cache = KeyCache(ttl_s=settings.api_key_cache_s)
    limiter = RateLimiter(per_s=settings.rate_limit_per_s, redis_url=settings.broker_url)
    fast_poll = PollFastPath(settings, key_cache=key_cache, limiter=limiter)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await fast_poll.close()
        engine.dispose()

    app = FarmApi(
        PollFrontDoor(fast_poll),
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
        limiter=limiter,
        key_cache=key_cache,
        submitter=Submitter(settings, publisher),
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    install_metrics(app, sessions=app.state.farm.sessions, models=settings.models)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(job_control.router)
    app.include_router(refine.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(campaigns.router)
    app.include_router(prompts.router)
    app.include_router(webhooks.router)
    app.include_router(files.router)
    app.include_router(web.router)
    app.include_router(web_files.router)
    app.include_router(web_control.router)
    app.include_router(web_refine.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
