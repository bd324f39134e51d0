"""LoRA adapters on one warm pipeline: loaded once, switched per shard, never a reload.

Before each shard the renderer makes the shard's LoRA set the active one:

1. an adapter the pipeline does not hold yet is loaded from the host store
   (worker/lora_store.py) with diffusers' ``load_lora_weights`` under a name made of
   the LoRA's name and hash (kohya and diffusers layouts alike; UNet and both text
   encoders);
2. ``set_adapters(names, weights)`` makes the set active (``disable_lora`` for none):
   the base weights are never changed, so switching back and forth renders exactly what
   a fresh pipeline would;
3. adapters past FARM_LORA_DEVICE_MB on the device are deleted, least recently used
   first (never one the shard needs).

A set that cannot load raises ``LoraLoadError`` and leaves no half-loaded adapter behind.

With torch.compile (the standard tier on a GPU) the compiled UNet is traced with the
adapters that are active: a new set re-traces it (a recompile) the first time it is
seen. docs/PERFORMANCE.md ("LoRA switches") has the measured trade-off.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections import OrderedDict
from typing import Any

from models.domain.loras import LoraSet, LoraUse, adapter_key
from worker.lora_store import LoraLoadError, LoraStore

log = logging.getLogger(__name__)


def active_adapters(renderer: object) -> str | None:
    """The LoRA set a renderer has active (its ``active_adapters``), which the claim
    prefers; None: switching costs it nothing (a simulation), or it cannot tell."""
    active = getattr(renderer, "active_adapters", None)
    return active if isinstance(active, str) else None


def require_no_loras(loras: LoraSet) -> None:
    """A renderer without adapters (FARM_LORAS empty here) cannot render a LoRA set."""
    if loras:
        raise LoraLoadError("this worker has no LoRA enabled (FARM_LORAS is empty)")


def adapter_name(use: LoraUse) -> str:
    """A peft adapter name (no '.'): the LoRA's name and hash."""
    return re.sub(r"\W", "_", f"{use.name}_{(use.sha256 or 'nohash')[:12]}")


class PipelineAdapters:
    """The adapters one pipeline holds, and the set that is active."""

    def __init__(self, pipe: Any, store: LoraStore, *, max_bytes: int) -> None:
        from worker.peft_compat import allow_text_encoder_adapters

        allow_text_encoder_adapters(pipe)
        self.pipe = pipe
        self.store = store
        self.max_bytes = max_bytes
        self._loaded: OrderedDict[str, int] = OrderedDict()  # adapter -> bytes, LRU first
        self._active: LoraSet = ()
        self._enabled = False
        self._stale = False  # a failed load left peft's active adapters unknown
        self.switches = 0  # changes of the active set (weights aside)
        self.loads = 0  # adapters loaded into the pipeline
        self.last_switch_s = 0.0

    @property
    def active_key(self) -> str:
        """The active set as the claim compares it (``models.domain.loras.adapter_key``)."""
        return adapter_key(self._active)

    def activate(self, loras: LoraSet) -> bool:
        """Make ``loras`` the active set; whether anything changed."""
        if loras == self._active and not self._stale:
            return False
        started = time.perf_counter()
        if adapter_key(loras) != self.active_key:
            self.switches += 1
        names = [self._ensure_loaded(use) for use in loras]
        if names:
            if not self._enabled:
                self.pipe.enable_lora()
                self._enabled = True
            self.pipe.set_adapters(names, adapter_weights=[use.weight for use in loras])
        elif self._enabled or self._stale:
            self.pipe.disable_lora()
            self._enabled = False
        self._active = loras
        self._stale = False
        self._evict(keep=set(names))
        self.last_switch_s = time.perf_counter() - started
        return True

    def _ensure_loaded(self, use: LoraUse) -> str:
        name = adapter_name(use)
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return name
        lora = self.store.get(use)
        try:
            with warnings.catch_warnings():
                # peft notes every adapter after the first: that is what the farm wants.
                warnings.filterwarnings("ignore", "Already found a `peft_config`")
                # A failed load cleans up after itself, saying so.
                warnings.filterwarnings("ignore", "Adapter .* was active which is now deleted")
                self.pipe.load_lora_weights(lora.tensors, adapter_name=name)
        except Exception as exc:  # shapes of another model, not a LoRA: fail the cells
            self._forget(name)
            raise LoraLoadError(f"LoRA {use.name!r} does not load on this model: {exc}") from None
        if name not in self._held():
            self._stale = True
            raise LoraLoadError(f"LoRA {use.name!r} matches no layer of this model")
        self._loaded[name] = lora.nbytes
        self.loads += 1
        # A new adapter starts active in peft: the set is made active by the caller.
        self._enabled = True
        return name

    def _held(self) -> set[str]:
        return {a for names in self.pipe.get_list_adapters().values() for a in names}

    def _forget(self, name: str) -> None:
        """Remove what a failed load may have left on the pipeline; the next set is made
        active again whatever it is (peft moved its active adapter)."""
        self._stale = True
        if name in self._held():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Adapter .* was active which is now deleted")
                self.pipe.delete_adapters([name])

    def _evict(self, keep: set[str]) -> None:
        total = sum(self._loaded.values())
        for name in list(self._loaded):
            if total <= self.max_bytes:
                break
            if name in keep:
                continue
            self.pipe.delete_adapters([name])
            total -= self._loaded.pop(name)
            log.info("LoRA adapter %s unloaded (device budget)", name)
