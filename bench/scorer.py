"""The scorer's cost per image, and render throughput with and without it.

1. Cost: the scorer (worker/scorer.py, the real loading code) on ``--images`` decoded
   1024² images in its batches: milliseconds per image, after a warm-up call.
2. Overlap: a real worker (``build_runner``: claim in Postgres, render, analysis thread,
   writer thread with PNG encoding and uploads to moto's S3 server, job artifacts)
   renders the same grid with FARM_SCORER off and on, alternating; throughput is images
   recorded per second of wall time from the first claim to the last record. The
   scorer runs on the analysis thread while the next shard renders, so "on" costs
   throughput only where the two share a processor that has no room for both.

Scorers: ``tiny`` (the tests' brightness ResNet: the plumbing alone), ``vit-base`` (a
random-weight ViT-B/16 at 224², 86 M parameters: the size class of common aesthetic
classifiers; random weights cost the same as trained ones), or a Hub id / folder
(``shadowlilac/aesthetic-shadow-v2`` with ``--label hq`` on a machine that has it).
The renderer is ``tiny-sdxl`` (the real diffusers pipeline, tiny random weights: CPU
minutes) unless ``--model`` names another source (``simulated:1.0`` stands in for a
full-size GPU render of 1 s/image). On CUDA both run on the GPU.

    python -m bench.scorer                                  # tiny-sdxl, vit-base, 2 x 24 images
    python -m bench.scorer --scorer tiny --images 4 --rounds 1 --steps 1
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import func, select

from bench._common import aws_defaults, emit, migrated_postgres, moto_server
from models.db.business_tables import CellAnalysis
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import make_engine, make_session_factory
from models.db.tables import Item, Job
from models.domain.scores import parse_score_labels
from models.domain.spec import JobSpec
from models.infra.settings import Settings
from worker.renderer import SimulatedRenderer
from worker.runtime import build_runner, close_runner, resolve_device
from worker.shard_runner import Outcome

MODEL = "bench-model"


def build_scorer(kind: str, folder: Path) -> str:
    """The scorer's source: a folder built here (``tiny``, ``vit-base``) or as given."""
    if kind == "tiny":
        from tests.tiny_scorer import build_tiny_scorer

        return str(build_tiny_scorer(folder / "tiny"))
    if kind == "vit-base":
        from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

        config = ViTConfig(num_labels=2, id2label={0: "lq", 1: "hq"}, label2id={"lq": 0, "hq": 1})
        ViTForImageClassification(config).save_pretrained(folder / "vit")
        ViTImageProcessorPil().save_pretrained(folder / "vit")
        return str(folder / "vit")
    return kind


def scorer_cost(source: str, label: str, device: str, images: int) -> dict[str, Any]:
    from worker.scorer import HfImageScorer

    started = time.perf_counter()
    scorer = HfImageScorer(source, label=label, labels=parse_score_labels(""), device=device)
    load_s = time.perf_counter() - started
    pictures = [SimulatedRenderer._draw(seed, 1024, 1024) for seed in range(images)]
    scorer.scores(pictures[: min(len(pictures), scorer.batch_size)])  # warm-up
    started = time.perf_counter()
    scorer.scores(pictures)
    spent = time.perf_counter() - started
    params = sum(p.numel() for p in scorer.model.parameters())
    return {
        "load_s": round(load_s, 2),
        "parameters_m": round(params / 1e6, 2),
        "batch_size": scorer.batch_size,
        "ms_per_image": round(1000 * spent / images, 2),
    }


def submit(settings: Settings, spec: dict[str, Any]) -> uuid.UUID:
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"bench-{uuid.uuid4().hex[:8]}").id
        [created] = create_jobs(
            session,
            tenant_id=tenant,
            requests=[NewJob(JobSpec.model_validate(spec))],
            default_model=MODEL,
            batch_size=settings.batch_size,
        )
    sessions.kw["bind"].dispose()
    return created.job.id


def render_once(settings: Settings, spec: dict[str, Any], *, scored: bool) -> dict[str, Any]:
    job_id = submit(settings, spec)
    runner = build_runner(settings, warm_models=[MODEL])  # loads pipeline and scorer first
    try:
        started = time.perf_counter()
        while runner.run_next(MODEL) is not Outcome.NOTHING:
            pass
        rendered = time.perf_counter() - started  # the last render ended; its shard is
        runner.drain()  # still being analyzed and written (the tail)
        wall = time.perf_counter() - started
    finally:
        close_runner(runner)
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        done = job.done
        scores = session.scalar(
            select(func.count()).where(Item.job_id == job_id, Item.score.is_not(None))
        )
        analysis_ms = session.scalar(
            select(func.avg(CellAnalysis.analysis_ms)).where(CellAnalysis.job_id == job_id)
        )
    sessions.kw["bind"].dispose()
    return {
        "scorer": scored,
        "images": done,
        "scored": scores,
        "wall_s": round(wall, 2),
        "tail_s": round(wall - rendered, 2),
        "images_per_s": round(done / wall, 3),
        # What a worker with more work sustains: its last shard's tail overlaps the next job.
        "images_per_s_steady": round(done / rendered, 3),
        "analysis_ms_per_image": None if analysis_ms is None else round(float(analysis_ms), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scorer", default="vit-base", help="tiny, vit-base, Hub id or folder")
    parser.add_argument("--label", default="hq", help="FARM_SCORER_LABEL (many-label models)")
    parser.add_argument("--model", default="tiny-sdxl", help="the renderer's model source")
    parser.add_argument("--images", type=int, default=24, help="images per run (and costed)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--bucket", default="1024x1024")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--on-first", action="store_true", help="each pair starts scored")
    args = parser.parse_args(argv)
    aws_defaults()
    with (
        migrated_postgres() as pg_url,
        moto_server() as s3,
        TemporaryDirectory() as tmp,
    ):
        base = Settings(
            database_url=pg_url,
            s3_endpoint_url=s3.endpoint_url,
            s3_bucket=s3.bucket,
            s3_prefix="bench",
            data_dir=Path(tmp),
            model=MODEL,
            models={MODEL: args.model},
            batch_size=args.batch_size,
        )
        device = resolve_device(base.device)
        source = build_scorer(args.scorer, Path(tmp))
        cost = scorer_cost(source, args.label, device, args.images)
        spec = {
            "prompts": ["1girl, solo, smile", "1boy, solo, night"],
            "buckets": [args.bucket],
            "seeds": {"start": 1, "count": max(1, args.images // 2)},
            "steps": args.steps,
            "model": MODEL,
        }
        with_scorer = base.model_copy(update={"scorer": source, "scorer_label": args.label})
        runs = []
        order = [(with_scorer, True), (base, False)] if args.on_first else [(base, False)]
        if not args.on_first:
            order.append((with_scorer, True))
        for _ in range(args.rounds):  # alternating: a drift in the machine's load hits both
            runs += [render_once(settings, spec, scored=scored) for settings, scored in order]
    off = [r["images_per_s"] for r in runs if not r["scorer"]]
    on = [r["images_per_s"] for r in runs if r["scorer"]]
    steady_off = [r["images_per_s_steady"] for r in runs if not r["scorer"]]
    steady_on = [r["images_per_s_steady"] for r in runs if r["scorer"]]
    result = {
        "device": device,
        "scorer": args.scorer,
        "model": args.model,
        "steps": args.steps,
        "bucket": spec["buckets"][0],
        "cost": cost,
        "runs": runs,
        "images_per_s_off": round(sum(off) / len(off), 3),
        "images_per_s_on": round(sum(on) / len(on), 3),
        "steady_images_per_s_off": round(sum(steady_off) / len(steady_off), 3),
        "steady_images_per_s_on": round(sum(steady_on) / len(steady_on), 3),
    }
    result["throughput_ratio"] = round(result["images_per_s_on"] / result["images_per_s_off"], 3)
    result["steady_ratio"] = round(
        result["steady_images_per_s_on"] / result["steady_images_per_s_off"], 3
    )
    emit(
        "scorer",
        result,
        f"{args.scorer} on {device}: {cost['ms_per_image']} ms/image alone; {args.model} "
        f"{spec['buckets'][0]} x{args.steps} steps: {result['images_per_s_off']} images/s "
        f"without, {result['images_per_s_on']} with (x{result['throughput_ratio']}; "
        f"steady x{result['steady_ratio']})",
    )
    return result


if __name__ == "__main__":
    main()
