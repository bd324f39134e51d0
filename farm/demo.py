"""``farm demo``: the whole farm in one process, rendering a sample Animagine grid.

SQLite, an in-process queue and worker, a local folder for storage: nothing to
install or start. The real API serves on a free local port and the real client
talks to it, so what runs is what a deployment runs, minus the services.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from farm.client import FarmClient
from farm.progress import JobProgress
from farm.stack import build_app, free_port, migrate, serve_in_thread
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.db.tables import Job
from models.infra.settings import Settings, get_settings
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, job_folder, sheet_name

# The model card's tag order: gender/count, character, series, then general tags.
SAMPLE_PROMPTS = [
    "1girl, souryuu asuka langley, neon genesis evangelion, solo, upper body, smile, "
    "looking at viewer, outdoors, night, city lights",
    "1boy, male focus, kamado tanjirou, kimetsu no yaiba, solo, haori, holding sword, "
    "dynamic pose, snow",
    "1girl, hatsune miku, vocaloid, twintails, singing, stage, concert, glowstick, from below",
]
SAMPLE_BUCKETS = ["1024x1024", "832x1216", "1216x832"]
SAMPLE_SEEDS = [20241124, 7]
ANIMAGINE = "animagine-xl-3.1"


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _weights_reachable(settings: Settings) -> tuple[bool, str]:
    """Are Animagine's weights on disk, or can they be downloaded now?"""
    from huggingface_hub import HfApi, try_to_load_from_cache

    repo_id, _, revision = settings.models.get(ANIMAGINE, "").partition("@")
    if "/" not in repo_id:  # the operator pointed it at a folder or file
        return Path(repo_id).expanduser().exists(), f"weights at {repo_id}"
    cached = try_to_load_from_cache(
        repo_id, "model_index.json", cache_dir=settings.models_dir, revision=revision or None
    )
    if isinstance(cached, str):
        return True, "weights already downloaded"
    try:
        HfApi().model_info(repo_id, revision=revision or None, timeout=5)
    except Exception as exc:
        return False, f"the weights are not downloaded and {repo_id} is unreachable ({exc!r:.80})"
    return True, f"downloading the weights (about 7 GB) from {repo_id} on first use"


def choose_model(settings: Settings) -> tuple[str, str]:
    """animagine-xl-3.1 where a GPU can run it and its weights can be had, else tiny-sdxl."""
    tiny = "the demo uses tiny-sdxl: random tiny weights built offline. The pictures are "
    tiny += "noise-like; the pipeline, queue, storage, sheets and API are the real ones."
    if not _has_cuda():
        return "tiny-sdxl", f"No CUDA GPU here, so {tiny}"
    if ANIMAGINE not in settings.models:
        return "tiny-sdxl", f"{ANIMAGINE} is not enabled in FARM_MODELS, so {tiny}"
    ok, why = _weights_reachable(settings)
    if not ok:
        return "tiny-sdxl", f"CUDA GPU found, but {why}; so {tiny}"
    return ANIMAGINE, (
        f"CUDA GPU found: using {ANIMAGINE} ({why}; Fair AI Public License 1.0-SD, see the README)."
    )


def demo_settings(data_dir: Path, model: str | None = None) -> Settings:
    base = get_settings()
    update: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": "",
        "broker_url": "",
        "s3_bucket": "",
        "storage_dir": None,
    }
    if model is not None:
        update["model"] = model
    return base.model_copy(update=update)


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


@dataclass(frozen=True)
class DemoOutput:
    folder: Path
    sheets: list[Path]
    gallery: Path
    manifest: Path

    def missing(self) -> list[Path]:
        return [p for p in (*self.sheets, self.gallery, self.manifest) if not p.is_file()]


def _output(settings: Settings, job_id: str) -> DemoOutput:
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    with sessions() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        tenant_id, prompts = job.tenant_id, len(job.grid["prompts"])
    key = job_folder(prefix=settings.s3_prefix, tenant_id=tenant_id, job_id=job.id)
    folder = settings.local_storage_dir.resolve() / key
    return DemoOutput(
        folder=folder,
        sheets=[folder / sheet_name(i) for i in range(prompts)],
        gallery=folder / GALLERY_NAME,
        manifest=folder / MANIFEST_NAME,
    )


def _quiet_libraries() -> None:
    """The demo's output is ours: no library progress bars or advisory warnings
    (the Hub's download bars stay: a first Animagine download takes a while)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_demo(console: Console, *, data_dir: Path, steps: int | None, serve: bool = False) -> int:
    _quiet_libraries()
    settings = demo_settings(data_dir.resolve())
    model, why = choose_model(settings)
    console.print(f"[bold]model:[/bold] {model}. {why}")
    settings = settings.model_copy(update={"model": model})
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
            started = time.monotonic()
            with JobProgress(console, job["total"], "rendering") as bar:
                final = client.wait(job["id"], poll_s=0.25, on_update=bar.update)
            elapsed = time.monotonic() - started
            if serve:
                _serve(console, url, key, job["id"])
    finally:
        worker.stop()  # drains the writer, then the sheets / manifest / gallery thread
    out = _output(settings, final["id"])
    rate = final["done"] / elapsed if elapsed > 0 else 0.0
    console.print(
        f"[bold]{final['status']}[/bold]: {final['done']}/{final['total']} images "
        f"in {elapsed:.1f} s ({rate:.2f} images/s)"
    )
    show = [
        ("images", f"{out.folder}/"),
        ("contact sheets", f"{out.folder / 'sheets'}/ ({len(out.sheets)}, one per prompt)"),
        ("gallery", str(out.gallery)),
        ("", out.gallery.as_uri()),
        ("manifest", str(out.manifest)),
    ]
    for label, value in show:
        console.print(f"{label + ':' if label else '':<16}{value}", soft_wrap=True)
    missing = out.missing()
    for path in missing:
        console.print(f"[red]missing:[/red] {path}", soft_wrap=True)
    return 0 if final["status"] == "succeeded" and not missing else 1


def _serve(console: Console, url: str, key: str, job_id: str) -> None:
    console.print(f"web page:       {url}/web/jobs/{job_id}", soft_wrap=True)
    console.print(f"sign in with:   {key}", soft_wrap=True)
    console.print("serving until Ctrl-C ...")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
