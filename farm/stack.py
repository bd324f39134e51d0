"""Wiring the pieces into a running stack: the API plus, in embedded mode, a worker
thread and the campaign scheduler with its webhook sender."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from api.main import create_app
from beat.main import BeatThreads
from migrations.apply import upgrade
from models.infra.queue import CeleryPublisher, LocalPublisher, Publisher, make_celery
from models.infra.settings import Settings
from worker.embedded import EmbeddedWorker


class EmbeddedRuntime:
    """What `farm beat` and `farm worker` do elsewhere, as threads of the API process."""

    def __init__(self, settings: Settings, publisher: LocalPublisher) -> None:
        self.worker = EmbeddedWorker(settings, publisher)  # its reconciler re-queues old work
        self.beat = BeatThreads(settings, self.worker.runner.sessions, publisher)

    def start(self) -> None:
        self.worker.start()
        self.beat.start()

    def stop(self) -> None:
        self.beat.stop()
        self.worker.stop()


def build_app(settings: Settings) -> tuple[FastAPI, EmbeddedRuntime | None]:
    """The API app and, in embedded mode, the runtime that serves it (not yet started)."""
    if not settings.embedded:
        publisher: Publisher = CeleryPublisher(make_celery(settings))
        return create_app(settings, publisher=publisher), None
    local = LocalPublisher()
    return create_app(settings, publisher=local), EmbeddedRuntime(settings, local)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: FastAPI, *, host: str, port: int) -> Iterator[str]:
    """Run uvicorn in a background thread for the life of the block; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def migrate(settings: Settings) -> None:
    upgrade(settings.migration_url(settings.sqlalchemy_url))
