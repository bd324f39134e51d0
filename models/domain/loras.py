"""LoRA adapters in a job: what a request names, what a cell records, A1111's prompt syntax.

A cell's adapters come from three places, merged into one set (``merge_loras``):

- ``loras`` in the spec: every cell of the job;
- ``lora_sets`` in the spec: a grid axis, one set per value (``[]``: none);
- A1111's ``<lora:name:weight>`` in the cell's prompt text, after styles, wildcards and
  Prompt S/R (so a style, a wildcard or an S/R value may carry one). The tag stays in the
  cell's prompt (A1111's infotext keeps it there too) and is taken out of the text that
  is encoded (``without_extra_networks``, which the prompt schedule applies first, as
  A1111 parses extra networks before it schedules prompt editing).

Names are the operator's (``FARM_LORAS``), never paths. Each use records the sha256 of
the file's tensor data as the job was made (A1111's LoRA hash: what Civitai calls AutoV3;
the infotext shows its first 12 hex digits); the worker refuses a file whose hash differs.
A set is kept sorted by name: the same adapters in any order are one set, one shard key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

LORA_WEIGHT_LIMIT: Final = 5.0  # |weight| at most this (AI Horde's bound)
MAX_LORAS_PER_SET: Final = 8  # a spec's set; the operator's per-cell limit is in ``Limits``
SHORT_HASH: Final = 12  # hex digits A1111 writes in "Lora hashes"
# A1111's ``re_extra_net``: ``<kind:params>``; the farm serves the ``lora`` kind.
EXTRA_NETWORK: Final = re.compile(r"<(\w+):([^>]+)>")
LORA_NAME: Final = r"^[\w][\w.\-]*$"  # what a name may be (no path, no ':' or '>')
_NAME = re.compile(LORA_NAME)


@dataclass(frozen=True, slots=True)
class LoraUse:
    """One adapter a cell is rendered with."""

    name: str
    weight: float = 1.0
    sha256: str | None = None  # of the file's tensor data, recorded when the job was made

    @property
    def short_hash(self) -> str | None:
        return None if self.sha256 is None else self.sha256[:SHORT_HASH]


LoraSet = tuple[LoraUse, ...]


@dataclass(frozen=True)
class LoraInfo:
    """What the operator enabled under a name (models/infra/loras.py reads the file)."""

    name: str
    source: str  # the file, folder or Hub id it loads from (shown: licences live there)
    sha256: str  # of the file's tensor data
    base_model: str | None = None  # a family (``base_family``), None: not known
    trigger_words: tuple[str, ...] = ()
    url: str | None = None  # where it was published (its licence), as the operator says
    size_bytes: int = 0


class LoraUnavailable(ValueError):
    """An enabled LoRA whose file cannot be read now (missing, not a LoRA, offline)."""


class LoraError(ValueError):
    """A request's LoRA that cannot be used: the reason, for the field that named it."""


class LoraCatalog(Mapping[str, LoraInfo]):
    """The operator's LoRAs by name; reading one may raise ``LoraUnavailable``.

    Equal only to itself: comparing two by their items would read every file.
    """

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


class _NoLoras(LoraCatalog):
    def __getitem__(self, name: str) -> LoraInfo:
        raise KeyError(name)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


NO_LORAS: Final[LoraCatalog] = _NoLoras()


def base_family(text: str | None) -> str | None:
    """A base model's family from what a file or an operator says (kohya's
    ``ss_base_model_version``, ModelSpec's ``modelspec.architecture``, a plain name)."""
    if not text:
        return None
    low = text.strip().lower()
    if low.startswith("tiny-sdxl"):
        return "tiny-sdxl"
    if "sdxl" in low or "stable-diffusion-xl" in low or "pony" in low or "illustrious" in low:
        return "sdxl"
    if low.startswith(("sd_v1", "sd1", "stable-diffusion-v1")) or low == "sd15":
        return "sd1"
    if low.startswith(("sd_v2", "sd2", "stable-diffusion-v2")):
        return "sd2"
    return low


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def lora_tag(use: LoraUse) -> str:
    return f"<lora:{use.name}:{_number(use.weight)}>"


def without_extra_networks(text: str) -> str:
    """The text A1111 encodes: every ``<kind:...>`` taken out."""
    return EXTRA_NETWORK.sub("", text) if "<" in text else text


def check_weight(weight: float) -> float:
    if not -LORA_WEIGHT_LIMIT <= weight <= LORA_WEIGHT_LIMIT:  # NaN fails this too
        raise LoraError(
            f"weight {weight!r} is outside -{LORA_WEIGHT_LIMIT:g}..{LORA_WEIGHT_LIMIT:g}"
        )
    return weight


def prompt_loras(text: str) -> list[LoraUse]:
    """The ``<lora:name[:weight]>`` tags of a text, in order; ``LoraError`` for another
    extra network kind, a bad name or weight, or a second weight (A1111's text encoder
    vs UNet split, which the farm does not serve)."""
    if "<" not in text:
        return []
    found: list[LoraUse] = []
    for match in EXTRA_NETWORK.finditer(text):
        kind, params = match.group(1), match.group(2).split(":")
        if kind != "lora":
            raise LoraError(f"{match.group(0)!r}: the farm serves <lora:...> extra networks only")
        name = params[0].strip()
        if not _NAME.match(name):
            raise LoraError(f"{match.group(0)!r}: {name!r} is not a LoRA name")
        if len(params) > 2:
            raise LoraError(f"{match.group(0)!r}: one weight only (<lora:name:weight>)")
        try:
            weight = float(params[1]) if len(params) == 2 else 1.0
        except ValueError:
            raise LoraError(f"{match.group(0)!r}: the weight is not a number") from None
        found.append(LoraUse(name, check_weight(weight)))
    return found


def merge_loras(*groups: Iterable[LoraUse]) -> LoraSet:
    """One set from its sources, sorted by name; ``LoraError`` for a name given twice."""
    merged: dict[str, LoraUse] = {}
    for group in groups:
        for use in group:
            if use.name in merged:
                raise LoraError(f"LoRA {use.name!r} is applied twice to one cell")
            merged[use.name] = use
    return tuple(merged[name] for name in sorted(merged))


def with_hashes(uses: Iterable[LoraUse], hashes: Mapping[str, str]) -> LoraSet:
    return tuple(LoraUse(u.name, u.weight, hashes.get(u.name, u.sha256)) for u in uses)


def adapter_key(uses: LoraSet) -> str:
    """What a shard needs loaded and active, weights aside (a weight is only a scale):
    the claim prefers shards whose key is the worker's (``''``: no adapter)."""
    return ",".join(f"{u.name}@{u.short_hash or ''}" for u in uses)


@dataclass(frozen=True)
class LoraCheck:
    """Checks a request's LoRAs against the catalog and the job's model."""

    catalog: Mapping[str, LoraInfo]
    model_base: str | None  # the job's model's family; None: any (a simulation)
    hashes: dict[str, str] = field(default_factory=dict)  # name -> sha256, of those checked

    def use(self, use: LoraUse) -> LoraUse:
        """The use with its hash; ``LoraError`` naming what is wrong."""
        try:
            info = self.catalog[use.name]
        except KeyError:
            enabled = ", ".join(sorted(self.catalog)) or "none"
            raise LoraError(f"unknown LoRA {use.name!r}; enabled: {enabled}") from None
        except LoraUnavailable as exc:
            raise LoraError(f"LoRA {use.name!r} cannot be used now: {exc}") from None
        if info.base_model and self.model_base and info.base_model != self.model_base:
            raise LoraError(
                f"LoRA {use.name!r} is built for {info.base_model}; this job's model is "
                f"{self.model_base}"
            )
        self.hashes[use.name] = info.sha256
        return LoraUse(use.name, use.weight, info.sha256)

    def all(self, uses: Sequence[LoraUse]) -> LoraSet:
        return tuple(self.use(u) for u in uses)


def plain(uses: LoraSet | None) -> list[dict[str, Any]] | None:
    """A set as JSON (stored rows, the manifest)."""
    if uses is None:
        return None
    return [{"name": u.name, "weight": u.weight, "sha256": u.sha256} for u in uses]


def from_plain(value: Any) -> LoraSet | None:
    """``plain``'s inverse; a set already made is returned as it is."""
    if value is None:
        return None
    return tuple(
        u if isinstance(u, LoraUse) else LoraUse(u["name"], u["weight"], u.get("sha256"))
        for u in value
    )
