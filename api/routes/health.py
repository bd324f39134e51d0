"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import State
from models.db.session import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: State) -> JSONResponse:
    """Ready when the database answers: nothing can be accepted without it.

    Storage is reported too (its answer kept ``FARM_STORAGE_CHECK_S``, so a probe storm
    is no storm on S3). A store that refuses our keys or bucket makes the process
    unready: a rollout with bad credentials stops there. One that is merely unreachable
    leaves it ready but ``degraded``: every API process shares the store, and jobs are
    still accepted and polled without it.
    """
    checks: dict[str, str] = {}
    try:
        with state.sessions() as session:
            ping(session)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    storage = state.storage_probe.status()
    checks["storage"] = storage.message
    ready = checks["database"] == "ok" and not storage.refused
    status = "unavailable" if not ready else "ok" if storage.ok else "degraded"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)
