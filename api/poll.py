"""``GET /v1/jobs/{id}`` through FastAPI: one worker-thread hop, one query.

On Postgres the API's front door (api/fast_poll.py) answers polls before FastAPI sees
them; this path serves SQLite (embedded mode) and anything the door passes on. It
checks the key the way every route does (api/auth.py) and reads only the status
columns (models/db/poll.py), in autocommit: no BEGIN / ROLLBACK round trips.
"""

from __future__ import annotations

import uuid

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request
from sqlalchemy.orm import Session

from api.auth import authenticate, missing_key, parse_bearer
from api.deps import AppState
from api.errors import ApiError
from models.db.poll import PolledJob, polled_job
from models.db.session import retry_on_disconnect

# At most this many polls hold a database connection at once, at most the engine's
# pool_size (FARM_DB_POOL_API, 8): more would open and close overflow connections.
POLL_THREADS = 8


def read_polled_job(request: Request, job_id: str) -> PolledJob:
    """The caller's job (run in a worker thread): 401 for a bad key, 429 past the
    tenant's rate, 404 for another tenant's job or no job."""
    state: AppState = request.app.state.farm
    key = parse_bearer(request.headers.get("authorization", ""))
    if key is None:
        raise missing_key()
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        parsed = None
    engine = state.sessions.kw["bind"]

    def read() -> PolledJob | None:
        with (
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            Session(bind=connection) as session,
        ):
            tenant = authenticate(state, session, key)
            if parsed is None:
                raise ApiError(404, f"no job {job_id!r}")
            return polled_job(session, tenant_id=tenant, job_id=parsed)

    job = retry_on_disconnect(read)  # no pre-ping: a dropped connection costs one retry
    if job is None:
        raise ApiError(404, f"no job {job_id!r}")
    return job


async def load_polled_job(request: Request, job_id: str) -> PolledJob:
    """``read_polled_job`` on a worker thread, at most ``POLL_THREADS`` at a time."""
    # Made in the event loop that serves the app (test clients start one per session).
    limiter: CapacityLimiter | None = getattr(request.app.state, "poll_limiter", None)
    if limiter is None:
        limiter = request.app.state.poll_limiter = CapacityLimiter(POLL_THREADS)
    return await anyio.to_thread.run_sync(read_polled_job, request, job_id, limiter=limiter)
