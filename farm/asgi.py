"""The API as an import string, for uvicorn's process manager: ``farm api --workers N``
(uvicorn can serve an app *object* in one process only). Each process builds its own
app, engine and pools.

    uvicorn --factory farm.asgi:app --workers 4
"""

from __future__ import annotations

from fastapi import FastAPI

from farm.stack import build_app
from models.infra.settings import get_settings


def app() -> FastAPI:
    settings = get_settings()
    if settings.embedded:
        raise RuntimeError("set FARM_BROKER_URL: a multi-process API cannot embed the worker")
    fastapi_app, _ = build_app(settings)
    return fastapi_app
