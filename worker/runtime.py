"""Building a worker's warm state: database pool, storage, renderer(s), runner."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from models.db.session import make_engine, make_session_factory
from models.infra.log_setup import adopt_library_logs
from models.infra.settings import Settings
from models.infra.storage import make_storage
from worker.analysis import load_analyzers
from worker.job_artifacts import JobArtifacts
from worker.lora_store import LoraStore
from worker.metrics import (
    MetricsListener,
    TimedStorage,
    install_worker_metrics,
    timed_analyzers,
    timed_renderers,
)
from worker.renderer import DiffusersRenderer, Renderer, SimulatedRenderer
from worker.shard_runner import ShardListener, ShardRunner

if TYPE_CHECKING:
    from worker.gpu_options import GpuOptions

log = logging.getLogger(__name__)


# torch, diffusers and the modules that import them at their top (model_loading,
# gpu_options) are imported in the functions that need them: a process that imports
# this module but renders nothing (the API, embedded mode until a model is asked
# for) never pays for them.


def resolve_device(configured: str) -> str:
    if configured:
        return configured
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tier_options_for(settings: Settings, device: str, tier: str) -> GpuOptions:
    """The switches a worker renders ``tier`` with.

    On CUDA, the tier's own (worker/gpu_options.py ``TIERS``; FARM_GPU_COMPILE may pick
    a compiled tier's mode, FARM_GPU_VAE an fp16-safe VAE); ValueError, with the reason,
    for a tier this GPU cannot serve. A CPU has no faster numerics to trade: every tier
    it serves renders the operator's CPU path (float32, eager, unless FARM_GPU_* forces
    a switch), and ``fast`` is refused.
    """
    from worker.gpu_options import gpu_options_for, tier_options, tiers_available

    reason = tiers_available(device)[tier]  # type: ignore[index]
    if reason is not None:
        raise ValueError(f"quality tier {tier!r} cannot be served here: {reason}")
    base = gpu_options_for(settings, device)
    if not device.startswith("cuda"):
        return base
    mode = settings.gpu_compile.strip().lower()
    options = tier_options(
        tier,  # type: ignore[arg-type]
        device=device,
        compile_mode=None if mode == "auto" else mode,
        cache_dir=base.cache_dir,
        warm_buckets=base.warm_buckets,
    )
    return replace(options, vae=base.vae)


def lora_store(settings: Settings) -> LoraStore | None:
    """The process's LoRA files in host memory (None: FARM_LORAS enables none)."""
    if not settings.loras:
        return None
    return LoraStore(settings.loras, settings.models_dir, settings.lora_cache_mb * 2**20)


def load_renderer(
    model_name: str, settings: Settings, tier: str = "standard", loras: LoraStore | None = None
) -> Renderer:
    """Load the named model (operator configured name -> source) for ``tier``; keep it warm.
    ``loras``: the process's LoRA store, shared by its renderers."""
    from models.domain.model_sources import parse_model_source

    if model_name not in settings.models:
        raise ValueError(
            f"model {model_name!r} is not enabled; enabled: {', '.join(sorted(settings.models))}"
        )
    source = parse_model_source(settings.models[model_name])
    if source.kind == "simulated":
        return SimulatedRenderer(seconds_per_image=source.seconds_per_image, model_name=model_name)
    from worker.gpu_apply import apply_gpu_options, load_vae, warm_renderer
    from worker.model_loading import a1111_model_hash, load_pipeline

    device = resolve_device(settings.device)
    options = tier_options_for(settings, device, tier)
    log.info("loading model %s (%s tier) from %s on %s", model_name, tier, source.location, device)
    log.info("GPU options: %s", options.describe())
    pipe = load_pipeline(
        source, device=device, cache_dir=settings.models_dir, dtype=options.torch_dtype
    )
    vae = None
    if options.vae:
        vae = load_vae(options.vae, dtype=options.torch_dtype, cache_dir=settings.models_dir)
    apply_gpu_options(pipe, options, vae=vae)
    # TF32 is a process-wide switch: the renderer sets it for each of its own calls, so
    # an exact and a standard renderer can share a worker.
    tf32 = options.tf32 if device.startswith("cuda") else None
    from worker.lora_adapters import PipelineAdapters

    adapters = None
    if loras is not None:
        adapters = PipelineAdapters(pipe, loras, max_bytes=settings.lora_device_mb * 2**20)
    renderer = DiffusersRenderer(
        pipe,
        model_name=model_name,
        model_hash=a1111_model_hash(source),
        tf32=tf32,
        adapters=adapters,
    )
    warm_renderer(renderer, options, batch_size=settings.batch_size)  # compile before work
    return renderer


def check_tiers(settings: Settings, models: list[str]) -> None:
    """Refuse to start a worker that cannot serve a tier FARM_QUALITY_TIERS promises."""
    from models.domain.model_sources import parse_model_source

    if all(parse_model_source(settings.models[m]).kind == "simulated" for m in models):
        return  # no numerics to choose: a simulation serves every tier
    from worker.gpu_options import tiers_available

    device = resolve_device(settings.device)
    available = tiers_available(device)
    for tier in settings.served_tiers:
        reason = available[tier]  # type: ignore[index]
        if reason is not None:
            raise RuntimeError(
                f"FARM_QUALITY_TIERS lists {tier!r}, which this worker cannot serve: {reason}. "
                "Remove it from FARM_QUALITY_TIERS, or run this model on a GPU that has it."
            )


class RendererCache:
    """Renderers by (model name, quality tier), each loaded once when first asked for."""

    def __init__(self, settings: Settings, preloaded: dict[str, Renderer] | None = None) -> None:
        self.settings = settings
        self._renderers = {(name, "standard"): r for name, r in (preloaded or {}).items()}
        self._lock = threading.Lock()
        self.loras = lora_store(settings)  # shared by every renderer of the process

    def __call__(self, model: str, tier: str = "standard") -> Renderer:
        with self._lock:
            if (model, tier) not in self._renderers:
                renderer = load_renderer(model, self.settings, tier, self.loras)
                self._renderers[(model, tier)] = renderer
            return self._renderers[(model, tier)]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def device_name(device: str) -> str:
    """What the ledger records as the device: the GPU's name (``cuda:0 NVIDIA H100 80GB
    HBM3``), or ``cpu``."""
    if not device.startswith("cuda"):
        return device
    import torch

    index = torch.device(device).index or 0
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def devices_by_model(settings: Settings) -> Callable[[str], str]:
    """The device each model renders on: a simulated model spends no GPU time."""
    names: dict[str, str] = {}

    def device_for(model: str) -> str:
        if model not in names:
            from models.domain.model_sources import parse_model_source

            source = settings.models.get(model)
            simulated = source is not None and parse_model_source(source).kind == "simulated"
            names[model] = (
                "simulated" if simulated else device_name(resolve_device(settings.device))
            )
        return names[model]

    return device_for


def build_runner(
    settings: Settings,
    *,
    warm_models: list[str],
    listeners: list[ShardListener] | None = None,
) -> ShardRunner:
    install_worker_metrics()  # this process renders: its metrics exist from now on
    adopt_library_logs("transformers", "diffusers")  # their lines in the farm's log format
    check_tiers(settings, [m for m in warm_models if m in settings.models])
    renderers = RendererCache(settings)
    for name in warm_models:  # load before taking work: the first shard is not slow
        renderers(name)
    # The analyzers run where the pipeline does (the GPU), on the analysis thread.
    analyzing = settings.screening_model or settings.scorer
    device = resolve_device(settings.device) if analyzing else "cpu"
    analyzers = timed_analyzers(load_analyzers(settings, device))
    device_for = devices_by_model(settings)
    sessions = make_session_factory(
        make_engine(settings.sqlalchemy_url, **settings.engine_kwargs("worker"))
    )
    storage = make_storage(settings)
    # Thumbnails, contact sheets, manifest and gallery, on the listener's own thread.
    artifacts = JobArtifacts(settings=settings, sessions=sessions, storage=storage)
    return ShardRunner(
        settings=settings,
        sessions=sessions,
        storage=TimedStorage(storage),
        renderer_for=timed_renderers(renderers),
        worker_id=worker_id(),
        listeners=[*(listeners or []), MetricsListener(sessions, device_for), artifacts],
        analyzers=analyzers,
        device_for=device_for,
    )


def close_runner(runner: ShardRunner) -> None:
    """Write what was rendered, then let the listeners finish what they were told."""
    runner.close()
    for listener in runner.listeners:
        close = getattr(listener, "close", None)
        if callable(close):
            close()
    engine = runner.sessions.kw.get("bind")
    if isinstance(engine, Engine):  # build_runner made it; nothing uses it any more
        engine.dispose()
