"""The Celery side of a GPU worker: one process, one warm pipeline, one queue."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from models.queue import RENDER_TASK, CeleryPublisher, make_celery, queue_name
from models.settings import get_settings
from worker.runtime import build_runner
from worker.shard_runner import ShardRunner

log = logging.getLogger(__name__)

app = make_celery(get_settings())
_state: dict[str, Any] = {"model": get_settings().model, "runner": None}


@signals.worker_process_init.connect
def _warm_up(**_: Any) -> None:
    # The solo pool sends this in the worker process itself, before any task.
    settings = get_settings()
    _state["runner"] = build_runner(
        settings, publisher=CeleryPublisher(app), warm_models=[_state["model"]]
    )
    log.info("worker warm: model %s", _state["model"])


@signals.worker_shutdown.connect
def _drain(**_: Any) -> None:
    runner: ShardRunner | None = _state["runner"]
    if runner is not None:
        runner.close()  # what was rendered is written before the process exits


@app.task(name=RENDER_TASK)
def render_shard(shard_id: int) -> str:
    runner: ShardRunner | None = _state["runner"]
    if runner is None:
        raise RuntimeError("worker not initialised")
    return runner.run(shard_id).value


def run_worker(model: str, *, loglevel: str = "INFO") -> None:
    """Serve one model's queue in this process (``farm worker``)."""
    _state["model"] = model
    app.worker_main(
        [
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
