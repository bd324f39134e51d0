"""The Celery side of a GPU worker: one process, one warm pipeline, one queue."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from models.infra.log_setup import setup_logging, wants_json
from models.infra.queue import RENDER_TASK, CeleryPublisher, make_celery, queue_name
from models.infra.settings import get_settings
from worker.metrics import serve_metrics
from worker.reconciler import Reconciler
from worker.runtime import build_runner, close_runner
from worker.shard_runner import ShardRunner

log = logging.getLogger(__name__)

app = make_celery(get_settings())
_state: dict[str, Any] = {"model": get_settings().model, "runner": None, "reconciler": None}


@signals.worker_process_init.connect
def _warm_up(**_: Any) -> None:
    # The solo pool sends this in the worker process itself, before any task.
    settings = get_settings()
    runner = build_runner(settings, warm_models=[_state["model"]])
    reconciler = Reconciler(
        runner.sessions,
        CeleryPublisher(app),
        interval_s=settings.reconcile_interval_s,
        models=[_state["model"]],
    )
    reconciler.start()
    _state.update(runner=runner, reconciler=reconciler)
    serve_metrics(settings.metrics_port)  # warm now: the probes on /metrics may pass
    log.info("worker warm: model %s", _state["model"])


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    # A receiver here means Celery leaves logging to us: FARM_LOG_FORMAT, FARM_LOG_LEVEL.
    settings = get_settings()
    setup_logging(settings)
    if logging.getLevelName(settings.log_level) >= logging.INFO:
        # Celery's "received" and "succeeded" lines name a token, not the work: the
        # runner writes one line per shard with its job, cells and timings instead.
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)


@signals.worker_shutdown.connect
def _drain(**_: Any) -> None:
    reconciler: Reconciler | None = _state["reconciler"]
    if reconciler is not None:
        reconciler.stop()
    runner: ShardRunner | None = _state["runner"]
    if runner is not None:
        close_runner(runner)  # what was rendered is written before the process exits


@app.task(name=RENDER_TASK)
def render_shard(shard_id: int) -> str:
    """A token for this worker's model. ``shard_id`` names the shard that caused it,
    but the worker takes whichever shard fair share says is next (usually that one)."""
    runner: ShardRunner | None = _state["runner"]
    if runner is None:
        raise RuntimeError("worker not initialised")
    return runner.run_next(_state["model"]).value


def run_worker(model: str, *, loglevel: str = "INFO") -> None:
    """Serve one model's queue in this process (``farm worker``)."""
    _state["model"] = model
    quiet = ["--quiet"] if wants_json(get_settings()) else []  # no banner amid JSON lines
    app.worker_main(
        [
            *quiet,
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={queue_name(model)}",
            f"--hostname={model}@%h",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
