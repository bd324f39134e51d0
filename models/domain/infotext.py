"""A1111's "infotext": the ``parameters`` PNG text chunk that tools read back.

<prompt>
Negative prompt: <negative>
Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 832x1216, Model: animagine-xl-3.1

The fields after the second line come from the cell schema (models/domain/cells.py):
each render field with an ``infotext`` key is written, in declaration order, unless
it has its default value (A1111 leaves defaults out: ``Emphasis`` is written for
"no_norm" only, the hi-res fields only for a hi-res cell). ``Size`` (width x height)
and ``Model`` follow ``Seed``; a hi-res cell adds ``Hires upscaler``; ``Size`` stays the
first pass's size, as in A1111.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from models.domain.cells import DEFAULTS, FIELD_INFO, RENDER_FIELDS, RenderParams

HIRES_UPSCALER: Final = "Latent (nearest-exact)"  # A1111's name for the farm's latent upscale
_AFTER_SIZE: Final = "Seed"  # Size and Model go right after this key, as A1111 writes them
_WRITTEN: Final = tuple(n for n in RENDER_FIELDS if FIELD_INFO[n].infotext is not None)
_BY_KEY: Final = {FIELD_INFO[n].infotext: n for n in _WRITTEN}


@dataclass(slots=True, kw_only=True)
class RenderParameters(RenderParams):
    """What a PNG's infotext says: the cell's render fields and the model's name."""

    model: str


def parameters_of(cell: RenderParams, model: str) -> RenderParameters:
    """What a cell's PNG says: its render fields and the model that rendered it."""
    return RenderParameters(**{name: getattr(cell, name) for name in RENDER_FIELDS}, model=model)


def _quote(value: str) -> str:
    # A1111 quotes values that contain its separators.
    if any(ch in value for ch in ',:"\n'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
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
            fields += [("Size", f"{p.width}x{p.height}"), ("Model", _quote(p.model))]
    if p.hires_scale is not None:
        fields.append(("Hires upscaler", _quote(HIRES_UPSCALER)))
    return fields


def format_infotext(p: RenderParameters) -> str:
    last = ", ".join(f"{k}: {v}" for k, v in _fields(p))
    return f"{p.prompt}\nNegative prompt: {p.negative_prompt}\n{last}"


def _unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    out: list[str] = []
    escaped = False
    for ch in value[1:-1]:
        if escaped:
            out.append("\n" if ch == "n" else ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


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
    return RenderParameters(
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines),
        width=width,
        height=height,
        model=params["Model"],
        **values,
    )
