"""Run in a fresh interpreter by test_worker_start.py: import the worker's modules with
settings reads forbidden, report what the import left behind, then run the start-up
functions and report what they did. Prints one JSON object."""

from __future__ import annotations

import gc
import json
import sys
import threading
from typing import Any

from celery import Celery, signals
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.registry import Collector

import models.infra.settings as settings_module
from models.infra import metric_names as names

WORKER_MODULES = ("worker.celery_app", "worker.metrics", "worker.runtime")
SIGNALS = {
    "worker_process_init": signals.worker_process_init,
    "setup_logging": signals.setup_logging,
    "worker_shutdown": signals.worker_shutdown,
}


class SettingsRead(Exception):
    pass


def _forbid(*_: Any, **__: Any) -> Any:
    raise SettingsRead("settings were read")


def farm_families(registry: CollectorRegistry = REGISTRY) -> list[str]:
    return sorted(m.name for m in registry.collect() if m.name.startswith("farm_"))


def receivers() -> dict[str, int]:
    return {name: len(signal.receivers or []) for name, signal in SIGNALS.items()}


def celery_apps() -> set[int]:
    # type(), not isinstance(): isinstance evaluates Celery's lazy proxies (current_app),
    # and that makes an app.
    return {id(o) for o in gc.get_objects() if issubclass(type(o), Celery)}


CELERY_OWN = celery_apps()  # Celery's own, if it made one when imported


def name_taken(name: str) -> bool:
    """Whether ``REGISTRY`` already has a collector of that name (a second one is refused)."""
    probe: Collector = Counter(name.removesuffix("_total"), "probe", registry=None)
    try:
        REGISTRY.register(probe)
    except ValueError:
        return True
    REGISTRY.unregister(probe)
    return False


def after_import() -> dict[str, Any]:
    real_init = settings_module.Settings.__init__
    real_get = settings_module.get_settings
    settings_module.Settings.__init__ = _forbid  # type: ignore[method-assign]
    settings_module.get_settings = _forbid  # type: ignore[assignment]
    try:
        for module in WORKER_MODULES:
            __import__(module)
    finally:
        settings_module.Settings.__init__ = real_init  # type: ignore[method-assign]
        settings_module.get_settings = real_get
    return {
        "imported": [m for m in WORKER_MODULES if m in sys.modules],
        "farm_families": farm_families(),
        "celery_apps": len(celery_apps() - CELERY_OWN),
        "receivers": receivers(),
        "threads": sorted(t.name for t in threading.enumerate()),
    }


def after_start_up() -> dict[str, Any]:
    from models.infra.queue import RENDER_TASK
    from models.infra.settings import Settings
    from worker.celery_app import start_worker_process
    from worker.metrics import IMAGES, install_worker_metrics

    settings = Settings(broker_url="redis://127.0.0.1:1/0", model="simulated")
    # Settings come in as an argument, never fetched.
    settings_module.get_settings = _forbid  # type: ignore[assignment]
    process = start_worker_process(settings, "simulated")
    try:
        process.app.tasks[RENDER_TASK](1)  # not warm yet: the task says so
        task_error = ""
    except RuntimeError as exc:
        task_error = str(exc)

    install_worker_metrics()
    IMAGES.labels("simulated", "1024x1024").inc()
    install_worker_metrics()  # again: harmless
    text = generate_latest(REGISTRY).decode()
    return {
        "task_registered": RENDER_TASK in process.app.tasks,
        "task_error": task_error,
        "task_queue": process.app.conf.task_default_queue,
        "celery_apps": len(celery_apps() - CELERY_OWN),
        "receivers": receivers(),
        "farm_families": farm_families(),
        "gpu_memory_registered": name_taken(names.GPU_MEMORY),
        "images_sample": REGISTRY.get_sample_value(
            names.IMAGES, {"model": "simulated", "bucket": "1024x1024"}
        ),
        "created_series": "_created" in text,
    }


if __name__ == "__main__":
    report = {"import": after_import()}
    report["start_up"] = after_start_up()
    print(json.dumps(report))
