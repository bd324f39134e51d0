"""A1111's "infotext": the ``parameters`` PNG text chunk that tools read back.

<prompt>
Negative prompt: <negative>
Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 832x1216, Model: animagine-xl-3.1

The fields after the second line come from the cell schema (models/domain/cells.py):
each render field with an ``infotext`` key is written, in declaration order, unless
it has its default value (A1111 leaves defaults out: ``Emphasis`` is written for
"no_norm" only, the hi-res fields only for a hi-res cell). ``Size`` (width x height),
``Model hash`` and ``Model`` follow ``Seed``; a hi-res cell adds ``Hires upscaler``;
``Size`` stays the first pass's size, as in A1111. A refinement (models/domain/refine.py)
adds ``Parent: <job>#<index>``, and ``Hires base: <sha256>`` when its hi-res pass started
from the parent's PNG (then the upscaler is ``Lanczos``, a resize of pixels).

What A1111 needs beyond the cell to make the same image is the renderer's ``Receipt``,
written last as A1111 writes it: ``RNG: CPU`` (A1111 assumes GPU noise without it),
``Pad conds: True`` where the prompt and negative were padded to the same length (A1111's
``pad_cond_uncond``, off by default there) and ``Version: farm x.y.z``. The version is
not a bare number on purpose: A1111 reads a version below 1.6 as a request for its old
prompt-editing timelines and other backward-compatibility switches.

The prompt is the cell's, with its prompt-editing syntax: A1111 schedules it the same way.
LoRAs are written as A1111 writes them: a ``<lora:name:weight>`` tag in the prompt for
each (the cell's own tags where they are; the job's ``loras`` and its ``lora_sets`` value
appended) and ``Lora hashes: "name: 0123456789ab, ..."``, the first 12 hex digits of each
file's tensor-data sha256 (A1111's and Civitai's short hash, which both look up).
Values are quoted as A1111 quotes them (JSON, when they hold ``,`` ``:`` or a newline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from models.domain.cells import DEFAULTS, FIELD_INFO, RENDER_FIELDS, RenderParams
from models.domain.loras import LoraError, LoraUse, lora_tag, prompt_loras
from models.domain.samplers import canonical_sampler

HIRES_UPSCALER: Final = "Latent (nearest-exact)"  # A1111's name for the farm's latent upscale
# A refinement's hi-res pass from its parent's PNG resizes pixels (worker/hires.py).
IMAGE_UPSCALER: Final = "Lanczos"
_AFTER_SIZE: Final = "Seed"  # Size and Model go right after this key, as A1111 writes them
_WRITTEN: Final = tuple(n for n in RENDER_FIELDS if FIELD_INFO[n].infotext is not None)
_BY_KEY: Final = {FIELD_INFO[n].infotext: n for n in _WRITTEN}


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """What reproducing an image needs beyond its cell: facts of the render itself."""

    model_hash: str | None = None  # A1111's short hash of the checkpoint file, if one file
    rng: str | None = None  # where the noise came from: "CPU"
    pad_conds: bool = False  # prompt and negative padded to the same number of chunks
    version: str | None = None  # "farm 0.1.0"


@dataclass(slots=True, kw_only=True)
class RenderParameters(RenderParams):
    """What a PNG's infotext says: the cell's render fields, the model and the receipt."""

    model: str
    model_hash: str | None = None
    rng: str | None = None
    pad_conds: bool = False
    version: str | None = None


def parameters_of(
    cell: RenderParams, model: str, receipt: Receipt | None = None
) -> RenderParameters:
    """What a cell's PNG says: its render fields, the model that rendered it, the receipt."""
    r = receipt or Receipt()
    return RenderParameters(
        **{name: getattr(cell, name) for name in RENDER_FIELDS},
        model=model,
        model_hash=r.model_hash,
        rng=r.rng,
        pad_conds=r.pad_conds,
        version=r.version,
    )


def _quote(value: str) -> str:
    # A1111's infotext quote(): JSON, for values that hold its separators.
    if any(ch in value for ch in ",:\n") or value.startswith('"'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _fields(p: RenderParameters) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for name in _WRITTEN:
        value = getattr(p, name)
        info = FIELD_INFO[name]
        if value is None:
            continue
        if name in DEFAULTS and value == DEFAULTS[name] and not info.write_default:
            continue
        assert info.infotext is not None
        fields.append((info.infotext, _quote(info.write(value))))
        if info.infotext == _AFTER_SIZE:
            fields.append(("Size", f"{p.width}x{p.height}"))
            if p.model_hash:
                fields.append(("Model hash", _quote(p.model_hash)))
            fields.append(("Model", _quote(p.model)))
    if p.hires_scale is not None:
        upscaler = HIRES_UPSCALER if p.base_sha256 is None else IMAGE_UPSCALER
        fields.append(("Hires upscaler", _quote(upscaler)))
    if p.parent_job_id is not None:  # a refinement names the cell it came from
        fields.append(("Parent", _quote(f"{p.parent_job_id}#{p.parent_index}")))
    if p.base_sha256 is not None:
        fields.append(("Hires base", _quote(p.base_sha256)))
    if p.loras:
        hashes = ", ".join(f"{u.name}: {u.short_hash or ''}" for u in p.loras)
        fields.append(("Lora hashes", json.dumps(hashes, ensure_ascii=False)))
    if p.rng:
        fields.append(("RNG", _quote(p.rng)))
    if p.pad_conds:
        fields.append(("Pad conds", "True"))
    if p.version:
        fields.append(("Version", _quote(p.version)))
    return fields


def _prompt_with_loras(p: RenderParameters) -> str:
    """The prompt with a tag for each LoRA it does not spell itself (A1111 reads them)."""
    try:
        written = {u.name for u in prompt_loras(p.prompt)}
    except LoraError:
        written = set()
    extra = [lora_tag(u) for u in p.loras if u.name not in written]
    return " ".join([p.prompt, *extra])


def format_infotext(p: RenderParameters) -> str:
    last = ", ".join(f"{k}: {v}" for k, v in _fields(p))
    return f"{_prompt_with_loras(p)}\nNegative prompt: {p.negative_prompt}\n{last}"


def _loras_of(prompt: str, hashes: str | None) -> tuple[LoraUse, ...]:
    by_name = {
        name.strip(): value.strip()
        for name, _, value in (pair.rpartition(":") for pair in (hashes or "").split(","))
        if name
    }
    try:
        uses = prompt_loras(prompt)
    except LoraError:
        return ()
    found = {u.name: LoraUse(u.name, u.weight, by_name.get(u.name) or None) for u in uses}
    return tuple(found[name] for name in sorted(found))


def _unquote(value: str) -> str:
    # A1111's unquote(): JSON, and the text as it is if it is not JSON.
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        text = json.loads(value)
    except ValueError:
        return value
    return text if isinstance(text, str) else value


def split_params(line: str) -> dict[str, str]:
    """``key: value`` pairs of infotext's last line (A1111's ``re_param``), in one pass:
    a value may be a quoted string holding commas and colons."""
    params: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        colon = line.find(":", i)
        if colon == -1:
            break
        key = line[i:colon].strip()
        j = colon + 1
        while j < n and line[j] == " ":
            j += 1
        if j < n and line[j] == '"':  # a quoted value: to the next unescaped quote
            k = j + 1
            while k < n and line[k] != '"':
                k += 2 if line[k] == "\\" else 1
            end = min(k + 1, n)
            value = line[j:end]
            comma = line.find(",", end)
        else:
            comma = line.find(",", j)
            value = line[j : n if comma == -1 else comma]
        if key:
            params[key] = _unquote(value.strip())
        i = n if comma == -1 else comma + 1
    return params


def parse_infotext(text: str) -> RenderParameters:
    *head, last = text.split("\n")
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in head:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].removeprefix(" ")
        target.append(line)
    params = split_params(last)
    width, height = (int(v) for v in params["Size"].split("x"))
    values: dict[str, Any] = {}
    for key, raw in params.items():
        name = _BY_KEY.get(key)
        if name is not None:
            values[name] = FIELD_INFO[name].read(raw)
    if "hires_scale" not in values:
        values.pop("hires_strength", None)  # without a hi-res pass it is img2img's strength
    parent, _, parent_index = params.get("Parent", "").rpartition("#")
    if parent and parent_index.isdigit():
        values.update(parent_job_id=parent, parent_index=int(parent_index))
    if "Hires base" in params:
        values["base_sha256"] = params["Hires base"]
    if "Sampler" in params and "Schedule type" in params:  # A1111 >= 1.9 splits the two
        values["sampler"] = canonical_sampler(params["Sampler"], params["Schedule type"])
    return RenderParameters(
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines),
        width=width,
        height=height,
        model=params.get("Model", ""),
        model_hash=params.get("Model hash"),
        rng=params.get("RNG"),
        pad_conds=params.get("Pad conds") == "True",
        version=params.get("Version"),
        loras=_loras_of("\n".join(prompt_lines), params.get("Lora hashes")),
        **values,
    )
