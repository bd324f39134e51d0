"""LoRA files in host memory: read once, kept while they fit (FARM_LORA_CACHE_MB).

One store per worker process, shared by its renderers (one per model and quality tier):
a file is read from disk (or downloaded from the Hub) once, however many pipelines load
it. Each read checks the file against the hash its cells recorded when the job was made:
a file that changed since fails those cells (``LoraLoadError``), it never renders them
with other weights. The tensors are kept as the file has them (kohya's or diffusers'
layout, with kohya's alphas): diffusers converts them when a pipeline loads them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.domain.loras import LoraUnavailable, LoraUse
from models.infra.loras import LoraConfig, file_facts, local_file, parse_lora_source

if TYPE_CHECKING:
    import torch


class LoraLoadError(RuntimeError):
    """A cell's LoRA that cannot be loaded here: its cells fail with this message."""


@dataclass(frozen=True)
class LoraFile:
    sha256: str
    tensors: dict[str, torch.Tensor]
    nbytes: int


class LoraStore:
    """Files by (name, hash), least recently used first out past ``max_bytes``."""

    def __init__(self, configs: dict[str, LoraConfig], cache_dir: Path, max_bytes: int) -> None:
        self.configs = configs
        self.cache_dir = cache_dir
        self.max_bytes = max_bytes
        self._files: OrderedDict[tuple[str, str], LoraFile] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # files read from disk: what the cache saves

    def get(self, use: LoraUse) -> LoraFile:
        key = (use.name, use.sha256 or "")
        with self._lock:
            found = self._files.get(key)
            if found is not None:
                self._files.move_to_end(key)
                return found
            found = self._read(use)
            self._files[key] = found
            self._evict()
            return found

    def _read(self, use: LoraUse) -> LoraFile:
        from safetensors.torch import load_file

        config = self.configs.get(use.name)
        if config is None:
            raise LoraLoadError(f"LoRA {use.name!r} is not enabled on this worker (FARM_LORAS)")
        try:
            path = local_file(parse_lora_source(config.source), self.cache_dir)
            facts = file_facts(path)
        except (LoraUnavailable, ValueError, OSError) as exc:
            raise LoraLoadError(f"LoRA {use.name!r} cannot be read: {exc}") from None
        if use.sha256 is not None and facts.sha256 != use.sha256:
            raise LoraLoadError(
                f"LoRA {use.name!r}: its file's hash is {facts.sha256[:12]}, the job was made "
                f"with {use.sha256[:12]} (the file changed; submit the job again to use it)"
            )
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # a corrupt file: the reason, for the cells
            raise LoraLoadError(f"LoRA {use.name!r} cannot be read: {exc}") from None
        self.reads += 1
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        return LoraFile(facts.sha256, tensors, nbytes)

    def _evict(self) -> None:
        total = sum(f.nbytes for f in self._files.values())
        while total > self.max_bytes and len(self._files) > 1:
            _, dropped = self._files.popitem(last=False)
            total -= dropped.nbytes
