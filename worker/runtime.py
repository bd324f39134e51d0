"""Building a worker's warm state: database pool, storage, renderer(s), runner."""

from __future__ import annotations

import logging
import os
import socket
import threading

from models.db import make_engine, make_session_factory
from models.settings import Settings
from models.storage import make_storage
from worker.renderer import DiffusersRenderer, Renderer, SimulatedRenderer
from worker.shard_runner import ShardListener, ShardRunner

log = logging.getLogger(__name__)


def resolve_device(configured: str) -> str:
    if configured:
        return configured
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_renderer(model_name: str, settings: Settings) -> Renderer:
    """Load the named model (operator configured name -> source) and keep it warm."""
    from worker.model_loading import parse_model_source

    if model_name not in settings.models:
        raise ValueError(
            f"model {model_name!r} is not enabled; enabled: {', '.join(sorted(settings.models))}"
        )
    source = parse_model_source(settings.models[model_name])
    if source.kind == "simulated":
        return SimulatedRenderer(seconds_per_image=source.seconds_per_image, model_name=model_name)
    from worker.model_loading import load_pipeline

    device = resolve_device(settings.device)
    log.info("loading model %s from %s on %s", model_name, source.location, device)
    pipe = load_pipeline(source, device=device, cache_dir=settings.models_dir)
    return DiffusersRenderer(pipe, model_name=model_name)


class RendererCache:
    """Renderers by model name, each loaded once (embedded mode serves every model)."""

    def __init__(self, settings: Settings, preloaded: dict[str, Renderer] | None = None) -> None:
        self.settings = settings
        self._renderers = dict(preloaded or {})
        self._lock = threading.Lock()

    def __call__(self, model_name: str) -> Renderer:
        with self._lock:
            if model_name not in self._renderers:
                self._renderers[model_name] = load_renderer(model_name, self.settings)
            return self._renderers[model_name]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_runner(
    settings: Settings,
    *,
    warm_models: list[str],
    listeners: list[ShardListener] | None = None,
) -> ShardRunner:
    renderers = RendererCache(settings)
    for name in warm_models:  # load before taking work: the first shard is not slow
        renderers(name)
    return ShardRunner(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.sqlalchemy_url)),
        storage=make_storage(settings),
        renderer_for=renderers,
        worker_id=worker_id(),
        listeners=listeners,
    )
