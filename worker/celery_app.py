"""The Celery side of a GPU worker: one process, one warm pipeline, one queue.

Nothing happens at import: :func:`run_worker` builds the Celery app, registers
``farm.render_shard`` and connects the signals (:func:`start_worker_process`),
then serves. The pipeline loads in ``worker_process_init``, before the first task.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from models.infra.log_setup import setup_logging, wants_json
from models.infra.queue import RENDER_TASK, CeleryPublisher, make_celery, queue_name
from models.infra.settings import Settings
from worker.metrics import serve_metrics
from worker.reconciler import Reconciler
from worker.runtime import build_runner, close_runner
from worker.shard_runner import ShardRunner

log = logging.getLogger(__name__)


class WorkerProcess:
    """What one ``farm worker`` process holds: its settings and model, the Celery app,
    and, once warm, the runner and the reconciler."""

    def __init__(self, settings: Settings, model: str) -> None:
        self.settings = settings
        self.model = model
        self.app: Celery = make_celery(settings)
        self.runner: ShardRunner | None = None
        self.reconciler: Reconciler | None = None

    def warm_up(self, **_: Any) -> None:
        """``worker_process_init``: the solo pool sends it in this process, before any task."""
        self.runner = build_runner(self.settings, warm_models=[self.model])
        self.reconciler = Reconciler(
            self.runner.sessions,
            CeleryPublisher(self.app),
            interval_s=self.settings.reconcile_interval_s,
            models=[self.model],
        )
        self.reconciler.start()
        serve_metrics(self.settings.metrics_port)  # warm now: the probes on /metrics may pass
        log.info("worker warm: model %s", self.model)

    def setup_logging(self, **_: Any) -> None:
        """``setup_logging``: a receiver means Celery leaves logging to us (FARM_LOG_*)."""
        setup_logging(self.settings)
        if logging.getLevelName(self.settings.log_level) >= logging.INFO:
            # Celery's "received" and "succeeded" lines name a token, not the work: the
            # runner writes one line per shard with its job, cells and timings instead.
            for name in ("celery.app.trace", "celery.worker.strategy"):
                logging.getLogger(name).setLevel(logging.WARNING)

    def shut_down(self, **_: Any) -> None:
        """``worker_shutdown``: what was rendered is written before the process exits."""
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.runner is not None:
            close_runner(self.runner)

    def render_shard(self, shard_id: int) -> str:
        """A token for this worker's model. ``shard_id`` names the shard that caused it,
        but the worker takes whichever shard fair share says is next (usually that one)."""
        if self.runner is None:
            raise RuntimeError("worker not initialised")
        return self.runner.run_next(self.model).value

    def argv(self, *, loglevel: str) -> list[str]:
        quiet = ["--quiet"] if wants_json(self.settings) else []  # no banner amid JSON lines
        return [
            *quiet,
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={queue_name(self.model)}",
            f"--hostname={self.model}@%h",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]


def start_worker_process(settings: Settings, model: str) -> WorkerProcess:
    """Build the Celery app, register ``farm.render_shard``, connect the signals.

    Celery's signals are process-wide: call this once per process (``run_worker``).
    """
    process = WorkerProcess(settings, model)

    @process.app.task(name=RENDER_TASK, shared=False)  # this app only, not every later one
    def render_shard(shard_id: int) -> str:
        return process.render_shard(shard_id)

    # Strong references: the receivers live as long as the process.
    signals.worker_process_init.connect(process.warm_up, weak=False)
    signals.setup_logging.connect(process.setup_logging, weak=False)
    signals.worker_shutdown.connect(process.shut_down, weak=False)
    return process


def run_worker(settings: Settings, model: str, *, loglevel: str = "INFO") -> None:
    """Serve one model's queue in this process (``farm worker``)."""
    process = start_worker_process(settings, model)
    process.app.worker_main(process.argv(loglevel=loglevel))
