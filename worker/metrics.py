"""What a worker measures: images, render and upload times, finished jobs, GPU memory.

A process that renders registers the metrics in prometheus_client's default
registry at start (:func:`install_worker_metrics`, called by the runtime);
importing this module registers nothing, so the API and the CLI never show
them. ``farm worker`` serves them on ``FARM_METRICS_PORT`` (:func:`serve_metrics`),
and in embedded mode the API's ``/metrics`` shows them. Timings come from thin
wrappers around the renderer and the storage, counts from a :class:`ShardListener`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from PIL import Image
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard
from models.db.farm_metrics import job_latency_s
from models.db.finish import CellResult
from models.domain.status import JobStatus
from models.infra import metric_names as names
from models.infra.storage import Storage
from worker.analysis import Analysis, ImageAnalyzer
from worker.lora_adapters import active_adapters
from worker.renderer import RenderBatch, Renderer, RendererFor, StopCheck
from worker.tenant_cache import TenantCache

log = logging.getLogger(__name__)

# Built unregistered (registry=None): install_worker_metrics registers them.
IMAGES = Counter(names.IMAGES, names.IMAGES_HELP, ["model", "bucket"], registry=None)
RENDER_SECONDS = Histogram(
    names.RENDER_SECONDS,
    names.RENDER_SECONDS_HELP,
    ["bucket"],
    buckets=names.RENDER_BUCKETS_S,
    registry=None,
)
UPLOAD_SECONDS = Histogram(
    names.UPLOAD_SECONDS, names.UPLOAD_SECONDS_HELP, buckets=names.UPLOAD_BUCKETS_S, registry=None
)
JOB_LATENCY = Histogram(
    names.JOB_LATENCY, names.JOB_LATENCY_HELP, buckets=names.JOB_LATENCY_BUCKETS_S, registry=None
)
JOBS = Counter(names.JOBS, names.JOBS_HELP, ["status"], registry=None)
GPU_SECONDS = Counter(
    names.GPU_SECONDS, names.GPU_SECONDS_HELP, ["tenant", "model", "device"], registry=None
)
ANALYSIS_SECONDS = Histogram(
    names.ANALYSIS_SECONDS,
    names.ANALYSIS_SECONDS_HELP,
    ["analyzer"],
    buckets=names.UPLOAD_BUCKETS_S,
    registry=None,
)
ANALYSIS_FAILURES = Counter(
    names.ANALYSIS_FAILURES, names.ANALYSIS_FAILURES_HELP, ["analyzer"], registry=None
)
IMAGES_HELD = Counter(names.IMAGES_HELD, names.IMAGES_HELD_HELP, ["model"], registry=None)


def bucket_label(width: int, height: int) -> str:
    return f"{width}x{height}"


class TimedRenderer:
    """A renderer whose every completed pipeline call is observed in farm_render_seconds."""

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner
        self.model_name = inner.model_name

    @property
    def active_adapters(self) -> str | None:
        return active_adapters(self.inner)

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        started = time.perf_counter()
        images = self.inner.render(batch, should_stop)
        elapsed = time.perf_counter() - started
        RENDER_SECONDS.labels(bucket_label(batch.first.width, batch.first.height)).observe(elapsed)
        return images


def timed_renderers(renderer_for: RendererFor) -> RendererFor:
    def timed(model: str, tier: str = "standard") -> Renderer:
        return TimedRenderer(renderer_for(model, tier))

    return timed


class TimedAnalyzer:
    """An image analyzer whose every call is observed in farm_analysis_seconds."""

    def __init__(self, inner: ImageAnalyzer) -> None:
        self.inner = inner
        self.name = inner.name

    def analyze(self, images: Sequence[Image.Image]) -> list[Analysis]:
        with ANALYSIS_SECONDS.labels(self.name).time():
            try:
                return self.inner.analyze(images)
            except Exception:
                ANALYSIS_FAILURES.labels(self.name).inc()
                raise


def timed_analyzers(analyzers: list[ImageAnalyzer]) -> list[ImageAnalyzer]:
    return [TimedAnalyzer(a) for a in analyzers]


class TimedStorage:
    """Storage whose puts (the runner's image uploads) are observed in farm_upload_seconds."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        with UPLOAD_SECONDS.time():  # failed puts too: slow failures are what to see
            self.inner.put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def url(self, key: str, *, expires_s: int) -> str:
        return self.inner.url(key, expires_s=expires_s)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)


class MetricsListener:
    """Counts images, GPU seconds and finished jobs as the runner records them, and logs
    each. GPU seconds are labelled per tenant: a hash of its id, or its name where the
    tenant's policy opts in (worker/tenant_cache.py)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        device_for: Callable[[str], str] = lambda _model: "unknown",
    ) -> None:
        self.sessions = sessions
        self.device_for = device_for
        self.tenants = TenantCache(sessions)

    def cells_recorded(self, shard: ClaimedShard, results: list[CellResult]) -> None:
        for result in results:
            IMAGES.labels(shard.model, _bucket_of(result)).inc()
        held = sum(r.held for r in results)
        if held:
            IMAGES_HELD.labels(shard.model).inc(held)
        tenant = self.tenants.get(shard.tenant_id).metrics_label
        gpu_s = sum(r.render_ms for r in results) / 1000
        GPU_SECONDS.labels(tenant, shard.model, self.device_for(shard.model)).inc(gpu_s)
        log.info("shard %s: %d image(s) recorded", shard.id, len(results))

    def job_finished(self, shard: ClaimedShard, status: JobStatus) -> None:
        JOBS.labels(status.value).inc()
        latency_s = self._latency_s(shard.job_id)
        if latency_s is not None:
            JOB_LATENCY.observe(latency_s)
        log.info(
            "job %s %s",
            shard.job_id,
            status.value,
            extra={"status": status.value, "latency_s": latency_s},
        )

    def _latency_s(self, job_id: uuid.UUID) -> float | None:
        with self.sessions() as session:
            return job_latency_s(session, job_id=job_id)


def _bucket_of(result: CellResult) -> str:
    # An image is rendered at its bucket's exact size.
    return bucket_label(*result.image.size) if result.image is not None else "unknown"


def gpu_memory_allocated() -> dict[str, int]:
    """Bytes torch has allocated per CUDA device; empty without CUDA or before its first use."""
    torch = sys.modules.get("torch")  # never import torch just to be scraped
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {
        f"cuda:{i}": int(torch.cuda.memory_allocated(i)) for i in range(torch.cuda.device_count())
    }


class GpuMemoryCollector(Collector):
    """farm_gpu_memory_bytes{device}, read at scrape time; absent on a CPU-only worker."""

    def __init__(self, read: Callable[[], dict[str, int]] = gpu_memory_allocated) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(names.GPU_MEMORY, names.GPU_MEMORY_HELP, labels=["device"])]

    def collect(self) -> Iterator[Metric]:
        readings = self.read()
        if not readings:
            return
        family = GaugeMetricFamily(names.GPU_MEMORY, names.GPU_MEMORY_HELP, labels=["device"])
        for device, allocated in sorted(readings.items()):
            family.add_metric([device], allocated)
        yield family


_installed: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()
_install_lock = threading.Lock()


def install_worker_metrics(registry: CollectorRegistry = REGISTRY) -> None:
    """Register the worker's metrics in ``registry`` (the process's default one unless
    told): called where a process starts rendering. A second call changes nothing,
    so every runner of a process (tests build several) may call it."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no farm_*_created series
    with _install_lock:
        if registry in _installed:
            return
        collectors = (IMAGES, RENDER_SECONDS, UPLOAD_SECONDS, JOB_LATENCY, JOBS)
        analysis = (ANALYSIS_SECONDS, ANALYSIS_FAILURES, IMAGES_HELD)
        for collector in (*collectors, GPU_SECONDS, *analysis):
            registry.register(collector)
        registry.register(GpuMemoryCollector())
        _installed.add(registry)


def serve_metrics(port: int) -> WSGIServer | None:
    """Serve this process's metrics on ``port`` (all interfaces), from a daemon thread.

    A port already in use is logged, not fatal: the worker renders all the same
    (give each worker on one host its own FARM_METRICS_PORT). 0 serves nothing.
    """
    if port == 0:
        log.info("FARM_METRICS_PORT is 0: this worker serves no metrics")
        return None
    try:
        server, _ = start_http_server(port)
    except OSError as exc:
        log.error("cannot serve metrics on port %d (%s): give each worker its own", port, exc)
        return None
    log.info("metrics on :%d/metrics", port)
    return server
