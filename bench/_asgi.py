"""An import string for uvicorn's ``--workers`` (``farm api`` passes an app object, which
uvicorn can only serve in one process): ``uvicorn --factory bench._asgi:app``."""

from __future__ import annotations

from fastapi import FastAPI

from farm.stack import build_app
from models.settings import get_settings


def app() -> FastAPI:
    settings = get_settings()
    if settings.embedded:
        raise RuntimeError("set FARM_BROKER_URL: a multi-process API cannot embed the worker")
    fastapi_app, _ = build_app(settings)
    return fastapi_app
