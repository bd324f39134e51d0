"""Celery's own yardstick: a no-op task on the farm's Celery configuration and broker.

Worker: ``python -m celery -A bench._noop_celery worker --pool=solo -Q bench.noop``.
"""

from __future__ import annotations

from models.infra.queue import make_celery
from models.infra.settings import Settings

NOOP_TASK = "bench.noop"
NOOP_QUEUE = "bench.noop"

app = make_celery(Settings())  # FARM_BROKER_URL from the environment


@app.task(name=NOOP_TASK)
def noop(index: int) -> int:
    return index
