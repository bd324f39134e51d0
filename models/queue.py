"""The transport: shard ids travel to workers, and nothing else does.

Celery on Redis in production; an in-process queue in embedded mode. Losing
a message loses no work, because Postgres holds the state.
"""

from __future__ import annotations

import queue
from typing import Protocol

import redis
from celery import Celery

from models.settings import Settings

RENDER_TASK = "farm.render_shard"


def queue_name(model: str) -> str:
    """One queue per model: a worker serves exactly the model it holds warm."""
    return f"render.{model}"


def make_celery(settings: Settings) -> Celery:
    app = Celery("farm", broker=settings.broker_url or "memory://")
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Long GPU tasks: ack after the work, one message at a time, redeliver if the
        # worker dies; Redis redelivers unacked messages after the visibility timeout.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue=queue_name(settings.model),
    )
    return app


class Publisher(Protocol):
    def publish(self, *, model: str, shard_ids: list[int]) -> None: ...

    def ready_count(self, *, model: str) -> int:
        """Messages waiting in the model's queue (not yet taken by a worker)."""
        ...


class CeleryPublisher:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self._redis: redis.Redis | None = None

    def ready_count(self, *, model: str) -> int:
        # Celery's Redis transport keeps a queue as a plain list named after it.
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.app.conf.broker_url)
        return int(self._redis.llen(queue_name(model)))

    def publish(self, *, model: str, shard_ids: list[int]) -> None:
        if not shard_ids:
            return
        # One pooled connection for the whole batch, not one per message.
        with self.app.producer_or_acquire() as producer:
            for shard_id in shard_ids:
                self.app.send_task(
                    RENDER_TASK, args=[shard_id], queue=queue_name(model), producer=producer
                )


class LocalPublisher:
    """Embedded mode: the worker thread in this process reads this queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, int]] = queue.Queue()

    def publish(self, *, model: str, shard_ids: list[int]) -> None:
        for shard_id in shard_ids:
            self.queue.put((model, shard_id))

    def ready_count(self, *, model: str) -> int:
        return self.queue.qsize()
