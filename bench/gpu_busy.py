"""GPU busy share of a worker: does encoding, uploading and recording hide behind renders?

A real worker's code path (``build_runner``: claim in Postgres, render, writer
thread with real PNG encoding and real S3 uploads to moto's server in its own
process, the job-artifacts listener with thumbnails and contact sheets) drives a
simulated renderer that takes a fixed time per image, standing in for the GPU.

busy share = (seconds the simulated GPU was asked to work) / (worker wall time, from
the first claim until the last image is recorded). Anything else — claims, waiting
for the writer, the last shard's upload — counts as idle. ``busy_share_steady``
leaves out that last shard's write (a worker with more work overlaps it too).

    python -m bench.gpu_busy                          # 200 images at 1.0 s and 0.3 s
    python -m bench.gpu_busy --images 8 --seconds 0.05
    python -m bench.gpu_busy --serial                 # no overlap: the "before"
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench._common import aws_defaults, emit, migrated_postgres, moto_server
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import make_engine, make_session_factory
from models.db.tables import Job
from models.domain.spec import JobSpec
from models.infra.settings import Settings
from models.infra.storage import Storage
from worker import shard_writer
from worker.png import encode_png
from worker.renderer import RenderBatch, Renderer, StopCheck
from worker.runtime import build_runner, close_runner
from worker.shard_runner import Outcome

MODEL = "simulated"


@dataclass
class Clock:
    """Seconds spent per named activity, summed across calls (thread-safe)."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, spent: float) -> None:
        with self.lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + spent
            self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed

    def mean_ms(self, name: str) -> float:
        return round(1000 * self.seconds.get(name, 0.0) / max(1, self.calls.get(name, 0)), 1)


class CountingRenderer:
    """The simulated GPU: records the work it was given (images x seconds per image)."""

    def __init__(self, inner: Renderer, seconds_per_image: float, clock: Clock) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.seconds_per_image = seconds_per_image
        self.clock = clock
        self.gpu_s = 0.0

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Any]:
        self.gpu_s += self.seconds_per_image * len(batch.seeds)
        started = time.perf_counter()
        try:
            return self.inner.render(batch, should_stop)
        finally:
            self.clock.add("render", time.perf_counter() - started)


class TimedStorage:
    def __init__(self, inner: Storage, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.bytes = 0

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.bytes += len(data)
        started = time.perf_counter()
        self.inner.put(key, data, content_type=content_type)
        self.clock.add("upload", time.perf_counter() - started)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def url(self, key: str, *, expires_s: int) -> str:
        return self.inner.url(key, expires_s=expires_s)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)


def submit(settings: Settings, images: int) -> uuid.UUID:
    prompts = 2 if images % 2 == 0 else 1
    spec = JobSpec.model_validate(
        {
            "prompts": [f"1girl, solo, smile, variant {i}" for i in range(prompts)],
            "seeds": {"start": 1, "count": images // prompts},
            "model": MODEL,
        }
    )
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"bench-{uuid.uuid4().hex[:8]}").id
        [created] = create_jobs(
            session,
            tenant_id=tenant,
            requests=[NewJob(spec)],
            default_model=MODEL,
            batch_size=settings.batch_size,
        )
    sessions.kw["bind"].dispose()
    return created.job.id


def run_once(base: Settings, *, seconds: float, images: int, serial: bool) -> dict[str, Any]:
    settings = base.model_copy(update={"models": {MODEL: f"simulated:{seconds}"}})
    job_id = submit(settings, images)
    runner = build_runner(settings, warm_models=[MODEL])
    clock = Clock()
    renderer = CountingRenderer(runner.renderer_for(MODEL), seconds, clock)
    runner.renderer_for = lambda _name, _tier="standard": renderer
    storage = TimedStorage(runner.storage, clock)
    runner.storage = runner.writer.storage = storage
    runner.output.submit = clock.wrap("wait_for_writer", runner.output.submit)  # type: ignore[method-assign]
    # Instrumentation only: time the writer's PNG encoding where the writer looks it up.
    vars(shard_writer)["encode_png"] = clock.wrap("encode", encode_png)
    try:
        started = time.perf_counter()
        while True:
            t = time.perf_counter()
            outcome = runner.run_next(MODEL)
            clock.add("run_next", time.perf_counter() - t)
            if outcome is Outcome.NOTHING:
                break
            if serial:
                runner.drain()
        renders_done = time.perf_counter()
        runner.drain()
        finished = time.perf_counter()
    finally:
        vars(shard_writer)["encode_png"] = encode_png
        close_runner(runner)
    with runner.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        done = job.done
    runner.sessions.kw["bind"].dispose()  # the worker's pool: its connections close now
    wall = finished - started
    claims = clock.seconds["run_next"] - clock.seconds.get("render", 0.0)
    claims -= clock.seconds.get("wait_for_writer", 0.0)
    shards = clock.calls.get("render", 0)
    return {
        "seconds_per_image": seconds,
        "images": images,
        "recorded": done,
        "shards": shards,
        "gpu_s": round(renderer.gpu_s, 2),
        "wall_s": round(wall, 2),
        "busy_share": round(renderer.gpu_s / wall, 4),
        "busy_share_steady": round(renderer.gpu_s / (renders_done - started), 4),
        "tail_s": round(finished - renders_done, 3),
        "claim_ms_per_shard": round(1000 * claims / max(1, shards), 1),
        "wait_for_writer_s": round(clock.seconds.get("wait_for_writer", 0.0), 3),
        "encode_ms_per_image": clock.mean_ms("encode"),
        "upload_ms_per_object": clock.mean_ms("upload"),
        "uploaded_mb": round(storage.bytes / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 0.3])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--serial", action="store_true", help="wait for each write (no overlap)")
    args = parser.parse_args(argv)
    aws_defaults()
    runs = []
    with migrated_postgres() as pg_url, moto_server() as s3, TemporaryDirectory() as tmp:
        base = Settings(
            database_url=pg_url,
            s3_endpoint_url=s3.endpoint_url,
            s3_bucket=s3.bucket,
            s3_prefix="bench",
            data_dir=Path(tmp),
            model=MODEL,
            batch_size=args.batch_size,
        )
        for seconds in args.seconds:
            runs.append(run_once(base, seconds=seconds, images=args.images, serial=args.serial))
    goals = {1.0: 0.98, 0.3: 0.95}
    result: dict[str, Any] = {"serial": args.serial, "runs": runs, "goals": goals}
    summary = "; ".join(
        f"{r['seconds_per_image']} s/image: busy {r['busy_share']:.3f} "
        f"(steady {r['busy_share_steady']:.3f}, goal {goals.get(r['seconds_per_image'], '-')})"
        for r in runs
    )
    emit("gpu_busy", result, f"{args.images} images, batch {args.batch_size}: {summary}")
    return result


if __name__ == "__main__":
    main()
