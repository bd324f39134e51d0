"""Model sources: what an operator writes in settings, and how a worker loads it.

tiny-sdxl                          a tiny random SDXL built offline (tests, CPU smoke)
simulated / simulated:0.5          no model; a renderer that sleeps (load tests)
/models/animagine-xl-3.1           a diffusers folder (also ./rel, ~/rel)
/models/animagine-xl-3.1.safetensors  an A1111-style single checkpoint (.ckpt too)
cagliostrolab/animagine-xl-3.1[@rev]  a Hugging Face Hub repo, optionally pinned
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

# diffusers classes come from their own modules: mypy resolves the package's lazy
# top-level names to placeholder "dummy" classes without the real signatures.
from diffusers import StableDiffusionXLPipeline
from huggingface_hub import try_to_load_from_cache

from models.domain.model_sources import ModelSource
from worker.tiny_sdxl import TINY_SDXL_VERSION, ensure_tiny_sdxl


def default_dtype(device: str) -> torch.dtype:
    return torch.float16 if device.startswith("cuda") else torch.float32


def load_pipeline(
    source: ModelSource,
    *,
    device: str,
    cache_dir: Path,
    dtype: torch.dtype | None = None,
    single_file_config: Path | None = None,
) -> StableDiffusionXLPipeline:
    """Load an SDXL pipeline onto `device`, ready to render.

    `single_file_config` is a diffusers folder describing a single-file checkpoint
    (configs, tokenizers, scheduler). Without it diffusers infers the architecture from
    the checkpoint's keys and fetches SDXL base's configs from the Hub into `cache_dir`.
    """
    dtype = dtype or default_dtype(device)
    # No invisible watermark: renders must match A1111's and not depend on whether the
    # invisible-watermark package happens to be installed.
    common: dict[str, Any] = {"dtype": dtype, "add_watermarker": False}
    if source.kind == "tiny":
        folder = ensure_tiny_sdxl(cache_dir / "tiny-sdxl")
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, **common)
    elif source.kind == "folder":
        folder = _model_folder(source)
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, **common)
    elif source.kind == "hub":
        pipe = _from_hub(source.location, device=device, cache_dir=cache_dir, common=common)
    elif source.kind == "single_file":
        location = _single_file_location(source)
        config = None if single_file_config is None else str(single_file_config)
        pipe = StableDiffusionXLPipeline.from_single_file(
            location, config=config, cache_dir=str(cache_dir), **common
        )
    else:
        raise ValueError(f"a {source.kind!r} model source has no pipeline to load")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_hub(
    location: str, *, device: str, cache_dir: Path, common: dict[str, Any]
) -> StableDiffusionXLPipeline:
    repo_id, _, revision = location.partition("@")
    kwargs = {**common, "use_safetensors": True, "cache_dir": str(cache_dir)}
    if revision:
        kwargs["revision"] = revision
    if common["dtype"] == torch.float16 and device.startswith("cuda"):
        try:  # half the download where the repo publishes fp16 files
            return StableDiffusionXLPipeline.from_pretrained(repo_id, variant="fp16", **kwargs)
        except ValueError as exc:
            if "variant" not in str(exc):
                raise
    return StableDiffusionXLPipeline.from_pretrained(repo_id, **kwargs)


def _model_folder(source: ModelSource) -> Path:
    folder = Path(source.location).expanduser()
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} is not a diffusers model folder: no model_index.json")
    return folder


def _single_file_location(source: ModelSource) -> str:
    if source.location.startswith("https://"):
        return source.location  # a file on the Hub; diffusers downloads it
    path = Path(source.location).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint file not found: {path}")
    return str(path)


def model_fingerprint(source: ModelSource, *, cache_dir: Path | None = None) -> str:
    """A short, stable identifier of the weights a source loads, for manifests.

    Hub: repo id and commit (the cached snapshot's commit when `cache_dir` holds one).
    Folder: hash of model_index.json and the UNet config (architecture, not weights).
    Single file: A1111's "Model hash" (first 10 hex digits of the file's sha256).
    """
    if source.kind == "tiny":
        return f"tiny-sdxl:v{TINY_SDXL_VERSION}"
    if source.kind == "simulated":
        return f"simulated:{source.seconds_per_image:g}"
    if source.kind == "hub":
        return f"hub:{_hub_revision(source.location, cache_dir)}"
    if source.kind == "folder":
        folder = _model_folder(source)
        digest = hashlib.sha256((folder / "model_index.json").read_bytes())
        unet_config = folder / "unet" / "config.json"
        if unet_config.is_file():
            digest.update(unet_config.read_bytes())
        return f"folder:{folder.name}:{digest.hexdigest()[:12]}"
    location = _single_file_location(source)
    if location.startswith("https://"):
        return f"single_file:{location}"
    return f"single_file:{Path(location).name}:{a1111_model_hash(source)}"


def a1111_model_hash(source: ModelSource) -> str | None:
    """A1111's "Model hash" (the first 10 hex digits of the checkpoint file's sha256), for
    a single-file checkpoint on this machine; None for any other source (no one file)."""
    if source.kind != "single_file" or source.location.startswith("https://"):
        return None
    path = Path(_single_file_location(source))
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)[:10]


@lru_cache(maxsize=8)
def _sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    # Once per file and version of it (a 6.9 GB checkpoint takes ~20 s): the renderer and
    # the manifest both ask.
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _hub_revision(location: str, cache_dir: Path | None) -> str:
    repo_id, _, revision = location.partition("@")
    if cache_dir is not None:
        cached = try_to_load_from_cache(
            repo_id, "model_index.json", cache_dir=cache_dir, revision=revision or None
        )
        if isinstance(cached, str):  # .../snapshots/<commit>/model_index.json
            return f"{repo_id}@{Path(cached).parent.name}"
    return location
