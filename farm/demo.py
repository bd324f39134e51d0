"""``farm demo``: the whole farm in one process, rendering a sample Animagine grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from farm.client import FarmClient
from farm.progress import JobProgress
from farm.stack import build_app, free_port, migrate, serve_in_thread
from models.db import make_engine, make_session_factory
from models.key_store import create_api_key
from models.settings import Settings, get_settings

SAMPLE_PROMPTS = [
    "1girl, souryuu asuka langley, neon genesis evangelion, solo, upper body, smile, "
    "looking at viewer, outdoors, night, city lights",
    "1boy, male focus, kamado tanjirou, kimetsu no yaiba, solo, haori, holding sword, "
    "dynamic pose, snow",
    "1girl, hatsune miku, vocaloid, twintails, singing, stage, concert, glowstick, from below",
]
SAMPLE_BUCKETS = ["1024x1024", "832x1216", "1216x832"]
SAMPLE_SEEDS = [20241124, 7]


def choose_model() -> tuple[str, str]:
    """animagine-xl-3.1 where a GPU can run it, else the tiny offline model; and why."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if not has_cuda:
        return "tiny-sdxl", (
            "no CUDA GPU here, so the demo uses tiny-sdxl: random tiny weights built offline. "
            "The pictures are noise-like; the pipeline, storage and API are the real ones."
        )
    return "animagine-xl-3.1", (
        "CUDA GPU found: using animagine-xl-3.1 (weights are fetched from "
        "cagliostrolab/animagine-xl-3.1 on first use, under the Fair AI Public License 1.0-SD)."
    )


def demo_settings(data_dir: Path, model: str) -> Settings:
    base = get_settings()
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": "",
            "broker_url": "",
            "s3_bucket": "",
            "storage_dir": None,
            "model": model,
        }
    )


def sample_spec(model: str, steps: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "animagine sample grid",
        "prompts": SAMPLE_PROMPTS,
        "buckets": SAMPLE_BUCKETS,
        "seeds": SAMPLE_SEEDS,
        "model": model,
    }
    if steps is not None:
        spec["steps"] = steps
    return spec


def run_demo(console: Console, *, data_dir: Path, steps: int | None) -> int:
    model, why = choose_model()
    console.print(f"[bold]model:[/bold] {model}. {why}")
    settings = demo_settings(data_dir.resolve(), model)
    migrate(settings)
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name="demo")
    port = free_port()
    settings = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    console.print("loading the model and starting the API, the queue and a worker ...")
    app, worker = build_app(settings)
    assert worker is not None  # demo settings are always embedded
    worker.start()
    try:
        with (
            serve_in_thread(app, host="127.0.0.1", port=port) as url,
            FarmClient(url, key) as client,
        ):
            job = client.submit(sample_spec(model, steps))
            console.print(
                f"submitted job {job['id']}: {job['total']} cells "
                f"({len(SAMPLE_PROMPTS)} prompts × {len(SAMPLE_BUCKETS)} buckets × "
                f"{len(SAMPLE_SEEDS)} seeds)"
            )
            with JobProgress(console, job["total"], "rendering") as bar:
                final = client.wait(job["id"], poll_s=0.25, on_update=bar.update)
            images = list(client.images(job["id"]))
    finally:
        worker.stop()
    folder = settings.local_storage_dir / settings.s3_prefix
    job_dir = next(folder.glob(f"*/{final['id']}"), folder)
    console.print(f"[bold]{final['status']}[/bold]: {final['done']}/{final['total']} images")
    console.print(f"images: {job_dir}")
    for image in images[:3]:
        console.print(f"  {image['key']}  seed {image['seed']}  {image['bucket']}")
    return 0 if final["status"] == "succeeded" else 1
