"""The API's observability: ``GET /metrics`` and one structured log line per request.

``/metrics`` shows the farm-wide gauges, read from Postgres at most once per
``CACHE_S`` (so a scrape costs a few index lookups and one pass over ``jobs``,
never a count of cells), followed by this process's own metrics (and, in
embedded mode, those of the in-process worker).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.db.farm_metrics import FarmSnapshot, read_snapshot
from models.infra import metric_names as names
from models.infra.log_setup import log_context

log = logging.getLogger(__name__)

CACHE_S = 10.0  # Prometheus scrapes every 15-60 s; several API replicas share the load


class FarmGauges(Collector):
    """farm_queue_depth{model} and farm_cells{status}, cached for ``ttl_s``.

    While the database is unreachable the gauges are left out (absent, not stale).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        models: Collection[str],
        ttl_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.models = sorted(models)
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshot: FarmSnapshot | None = None
        self._read_at = 0.0

    def snapshot(self) -> FarmSnapshot | None:
        with self._lock:  # concurrent scrapes share one query
            now = self.clock()
            if self._snapshot is None or now - self._read_at >= self.ttl_s:
                try:
                    with self.sessions() as session:
                        self._snapshot = read_snapshot(session, models=self.models)
                except SQLAlchemyError as exc:
                    log.warning("metrics: database unavailable (%s)", exc.__class__.__name__)
                    self._snapshot = None
                    return None
                self._read_at = now
            return self._snapshot

    def describe(self) -> Iterable[Metric]:
        return list(self._families(FarmSnapshot({}, {})))

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot()
        if snapshot is not None:
            yield from self._families(snapshot)

    @staticmethod
    def _families(snapshot: FarmSnapshot) -> Iterator[Metric]:
        queue = GaugeMetricFamily(names.QUEUE_DEPTH, names.QUEUE_DEPTH_HELP, labels=["model"])
        for model, depth in snapshot.queue_depth.items():
            queue.add_metric([model], depth)
        cells = GaugeMetricFamily(names.CELLS, names.CELLS_HELP, labels=["status"])
        for status, count in snapshot.cells.items():
            cells.add_metric([status], count)
        yield queue
        yield cells


def install_metrics(
    app: FastAPI, *, sessions: sessionmaker[Session], models: Collection[str]
) -> None:
    """Add ``GET /metrics`` (Prometheus text format) and the request log to ``app``."""
    farm = CollectorRegistry()
    farm.register(FarmGauges(sessions, models=models))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body = generate_latest(farm) + generate_latest(REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)  # what generate_latest writes

    app.add_middleware(RequestLog)


# -- request log ---------------------------------------------------------------------------

_JOB_PATH = re.compile(r"/v1/jobs/([0-9a-fA-F-]{36})(?:/|$)")
_PROBES = frozenset({"/metrics", "/healthz", "/readyz"})  # logged at DEBUG: they never stop
request_log = logging.getLogger("api.requests")


class RequestLog:
    """One line per request (method, path, status, duration_ms, job_id when known).

    Lines logged while a request under ``/v1/jobs/{id}`` is handled carry its job id;
    a created job's id comes from the response's ``Location``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        match = _JOB_PATH.match(path)
        job_id = match.group(1).lower() if match else None
        status = 500
        started = time.perf_counter()

        async def send_watched(message: Message) -> None:
            nonlocal status, job_id
            if message["type"] == "http.response.start":
                status = message["status"]
                job_id = job_id or _job_in_location(message.get("headers", []))
            await send(message)

        try:
            with log_context(job_id=job_id):
                await self.app(scope, receive, send_watched)
        finally:
            log_request(scope["method"], path, status, started=started, job_id=job_id)


def log_request(method: str, path: str, status: int, *, started: float, job_id: str | None) -> None:
    """The access log line of one request (``started``: its ``time.perf_counter()``)."""
    fields: dict[str, object] = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if job_id is not None:
        fields["job_id"] = job_id
    level = logging.DEBUG if path in _PROBES else logging.INFO
    request_log.log(level, "%s %s %d", method, path, status, extra=fields)


def _job_in_location(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"location":
            match = _JOB_PATH.match(value.decode("latin-1"))
            return match.group(1).lower() if match else None
    return None
