"""The operator's LoRAs (``FARM_LORAS``): where each file is, its hash and what it says.

``FARM_LORAS`` is a JSON object, name -> source, or name -> ``{"source": ..., "base_model":
..., "trigger_words": [...], "url": ...}``. A source is:

/loras/style.safetensors             a file (kohya's layout, as Civitai serves it, or
                                     diffusers'/peft's); also ./rel, ~/rel
/loras/style-lora/                   a diffusers LoRA folder (pytorch_lora_weights
                                     .safetensors, or its one .safetensors file)
owner/name[@rev]                     a Hub repo's pytorch_lora_weights.safetensors
owner/name[@rev]:path/file.safetensors  a named file of a Hub repo

Only ``.safetensors`` load: a pickled file (.ckpt, .pt, .bin) can run code when read.
A file's hash is A1111's: the sha256 of its tensor data (the bytes after the safetensors
header), so a change of metadata alone keeps it; computed once per file version (path,
size, modification time) in each process. A Hub file is downloaded into the model cache
(FARM_MODEL_CACHE_DIR) the first time a process needs it, the API's included.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.domain.loras import LoraCatalog, LoraInfo, LoraUnavailable, base_family

DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' save_lora_weights name
_HUB = re.compile(r"([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@([\w./-]+?))?(?::(.+))?")
_LOCAL = ("/", "./", "../", "~")
_PICKLES = (".ckpt", ".pt", ".pth", ".bin")


class LoraConfig(BaseModel):
    """One ``FARM_LORAS`` entry."""

    model_config = ConfigDict(extra="forbid")

    source: str
    base_model: str | None = None  # overrides what the file says (kohya/ModelSpec metadata)
    trigger_words: list[str] = Field(default_factory=list)
    url: str | None = None  # where it was published: its licence is there


@dataclass(frozen=True)
class LoraSource:
    kind: Literal["file", "folder", "hub"]
    location: str  # a path, or a repo id
    revision: str | None = None
    filename: str = DIFFUSERS_WEIGHTS  # in a Hub repo


def parse_lora_source(source: str) -> LoraSource:
    text = source.strip()
    if text.lower().endswith(_PICKLES):
        raise ValueError(f"{source!r}: only .safetensors LoRAs load (a pickled file can run code)")
    hub = _HUB.fullmatch(text)
    local = text.startswith(_LOCAL) or Path(text).expanduser().exists()
    named_file = hub is not None and hub.group(3) is not None
    plain_file = text.lower().endswith(".safetensors") and not named_file
    if hub and not local and not plain_file and "--" not in text and ".." not in text:
        return LoraSource("hub", hub.group(1), hub.group(2), hub.group(3) or DIFFUSERS_WEIGHTS)
    if text.lower().endswith(".safetensors"):
        return LoraSource("file", text)
    if local:
        return LoraSource("folder", text)
    raise ValueError(
        f"LoRA source {source!r} is not a .safetensors file, a diffusers LoRA folder (a path "
        "starting with '/', './', '../' or '~'), nor a Hub id 'owner/name[@rev][:file]'"
    )


def lora_configs(raw: Mapping[str, Any]) -> dict[str, LoraConfig]:
    """``FARM_LORAS`` parsed and checked (ValueError naming the entry)."""
    configs: dict[str, LoraConfig] = {}
    for name, value in raw.items():
        entry = value if isinstance(value, LoraConfig) else None
        try:
            if entry is None:
                data = {"source": value} if isinstance(value, str) else value
                entry = LoraConfig.model_validate(data)
            if not re.fullmatch(r"[\w][\w.\-]*", name):
                raise ValueError("a name is letters, digits, '_', '-' and '.'")
            parse_lora_source(entry.source)
        except ValueError as exc:
            raise ValueError(f"FARM_LORAS[{name!r}]: {exc}") from None
        configs[name] = entry
    return configs


def local_file(source: LoraSource, cache_dir: Path) -> Path:
    """The file to read (a Hub file downloaded first); ``LoraUnavailable`` why not."""
    if source.kind == "hub":
        from huggingface_hub import hf_hub_download

        try:
            downloaded = hf_hub_download(
                source.location, source.filename, revision=source.revision, cache_dir=cache_dir
            )
        except Exception as exc:  # offline, gone, private: the reason, for the error
            raise LoraUnavailable(f"{source.location}: {exc}") from None
        return Path(downloaded)
    path = Path(source.location).expanduser()
    if source.kind == "folder":
        if not path.is_dir():
            raise LoraUnavailable(f"{path} is not a folder")
        weights = path / DIFFUSERS_WEIGHTS
        found = [weights] if weights.is_file() else sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise LoraUnavailable(f"{path}: no {DIFFUSERS_WEIGHTS}, nor one .safetensors file")
        path = found[0]
    if not path.is_file():
        raise LoraUnavailable(f"{path}: no such file")
    return path


@dataclass(frozen=True)
class FileFacts:
    sha256: str  # of the tensor data (A1111's LoRA hash)
    metadata: dict[str, str]
    size_bytes: int


def file_facts(path: Path) -> FileFacts:
    stat = path.stat()
    return _facts(path.resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _facts(path: Path, size: int, _mtime_ns: int) -> FileFacts:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise LoraUnavailable(f"{path} is not a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > min(size, 100 * 2**20):
            raise LoraUnavailable(f"{path} is not a safetensors file")
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise LoraUnavailable(f"{path} is not a safetensors file") from None
        digest = hashlib.file_digest(f, "sha256").hexdigest()  # the rest: the tensors
    metadata = header.get("__metadata__") or {}
    return FileFacts(digest, {str(k): str(v) for k, v in metadata.items()}, size)


def _base_of(config: LoraConfig, metadata: Mapping[str, str]) -> str | None:
    said = (
        config.base_model
        or metadata.get("ss_base_model_version")
        or metadata.get("modelspec.architecture")
    )
    return base_family(said)


class FileLoraCatalog(LoraCatalog):
    """``FARM_LORAS`` as the domain reads it: each entry's file found and hashed when first
    asked for (``LoraUnavailable`` while it cannot be read)."""

    def __init__(self, configs: Mapping[str, LoraConfig], cache_dir: Path) -> None:
        self.configs = dict(configs)
        self.cache_dir = cache_dir

    def __getitem__(self, name: str) -> LoraInfo:
        config = self.configs[name]
        source = parse_lora_source(config.source)
        facts = file_facts(local_file(source, self.cache_dir))
        return LoraInfo(
            name=name,
            source=config.source,
            sha256=facts.sha256,
            base_model=_base_of(config, facts.metadata),
            trigger_words=tuple(config.trigger_words),
            url=config.url,
            size_bytes=facts.size_bytes,
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def __contains__(self, name: object) -> bool:
        return name in self.configs
