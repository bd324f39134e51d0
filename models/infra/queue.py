"""The transport: shard ids travel to workers, and nothing else does.

Celery on Redis in production; an in-process queue in embedded mode. Losing
a message loses no work, because Postgres holds the state.
"""

from __future__ import annotations

import base64
import json
import queue
import socket
import uuid
from typing import Protocol

import redis
from celery import Celery

from models.infra.settings import Settings

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
        if _plain_redis(self.app):
            # 2,500 tokens in one pipelined round trip (~30 ms) instead of one
            # send_task each (~0.8 ms each: a new Redis client and a LPUSH per message).
            if self._redis is None:
                self._redis = redis.Redis.from_url(self.app.conf.broker_url)
            messages = redis_token_messages(model=model, shard_ids=shard_ids)
            with self._redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(messages), _PUSH_CHUNK):
                    pipe.lpush(queue_name(model), *messages[start : start + _PUSH_CHUNK])
                pipe.execute()
            return
        with self.app.producer_or_acquire() as producer, producer.batch():
            for shard_id in shard_ids:
                self.app.send_task(
                    RENDER_TASK, args=[shard_id], queue=queue_name(model), producer=producer
                )


_PUSH_CHUNK = 1000


def _plain_redis(app: Celery) -> bool:
    """A redis:// broker without options that change kombu's key layout."""
    url = str(app.conf.broker_url or "")
    options = app.conf.broker_transport_options or {}
    return url.startswith(("redis://", "rediss://")) and not options.get("global_keyprefix")


def redis_token_messages(*, model: str, shard_ids: list[int]) -> list[str]:
    """``render_shard(shard_id)`` as kombu's Redis transport stores it (Celery protocol 2).

    The JSON envelope ``send_task`` LPUSHes (body base64-encoded, a fresh task id and
    delivery tag per message), built from one template: ~10 µs a message instead of
    ~300 µs through a kombu producer. The end-to-end tests run these through a real
    Celery worker.
    """
    template = _token_template(model)
    embed = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
    messages = []
    for shard_id in shard_ids:
        task_id = str(uuid.uuid4())
        body = base64.b64encode(f"[[{int(shard_id)}], {{}}, {embed}]".encode()).decode()
        messages.append(
            template.format(body=body, task=task_id, tag=uuid.uuid4(), shard=int(shard_id))
        )
    return messages


def _token_template(model: str) -> str:
    marks = {name: f"@@{name}@@" for name in ("body", "task", "tag", "shard")}
    envelope = {
        "body": marks["body"],
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": RENDER_TASK,
            "id": marks["task"],
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": marks["task"],
            "parent_id": None,
            "argsrepr": f"[{marks['shard']}]",
            "kwargsrepr": "{}",
            "origin": f"farm@{socket.gethostname()}",
            "ignore_result": False,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": marks["task"],
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue_name(model)},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": marks["tag"],
        },
    }
    template = json.dumps(envelope).replace("{", "{{").replace("}", "}}")
    for name, mark in marks.items():
        template = template.replace(mark, f"{{{name}}}")
    return template


class LocalPublisher:
    """Embedded mode: the worker thread in this process reads this queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, int]] = queue.Queue()

    def publish(self, *, model: str, shard_ids: list[int]) -> None:
        for shard_id in shard_ids:
            self.queue.put((model, shard_id))

    def ready_count(self, *, model: str) -> int:
        return self.queue.qsize()
