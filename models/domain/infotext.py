"""A1111's "infotext": the ``parameters`` PNG text chunk that tools read back.

<prompt>
Negative prompt: <negative>
Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 832x1216, Model: animagine-xl-3.1

A hi-res fix adds ``Denoising strength``, ``Hires upscale``, ``Hires steps`` (when set)
and ``Hires upscaler``, and ``Size`` stays the first pass's size, as in A1111; the
"no_norm" emphasis adds ``Emphasis: No norm``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.domain.samplers import a1111_name, canonical_sampler


@dataclass(frozen=True)
class RenderParameters:
    prompt: str
    negative_prompt: str
    steps: int
    sampler: str  # canonical id, e.g. "euler_a"
    guidance_scale: float
    seed: int
    width: int
    height: int
    model: str
    emphasis: str = "original"  # "original" | "no_norm"
    hires_scale: float | None = None  # None: no hi-res fix
    hires_steps: int | None = None  # None: the first pass's steps
    denoising_strength: float | None = None  # the hi-res pass's strength


HIRES_UPSCALER = "Latent (nearest-exact)"  # A1111's name for the farm's latent upscale
_EMPHASIS_NAMES = {"original": "Original", "no_norm": "No norm"}  # A1111's option names


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quote(value: str) -> str:
    # A1111 quotes values that contain its separators.
    if any(ch in value for ch in ',:"\n'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return value


def format_infotext(p: RenderParameters) -> str:
    fields = [
        ("Steps", str(p.steps)),
        ("Sampler", a1111_name(p.sampler)),
        ("CFG scale", _fmt_number(p.guidance_scale)),
        ("Seed", str(p.seed)),
        ("Size", f"{p.width}x{p.height}"),
        ("Model", _quote(p.model)),
    ]
    if p.emphasis != "original":
        fields.append(("Emphasis", _EMPHASIS_NAMES[p.emphasis]))
    if p.hires_scale is not None:
        if p.denoising_strength is not None:
            fields.append(("Denoising strength", _fmt_number(p.denoising_strength)))
        fields.append(("Hires upscale", _fmt_number(p.hires_scale)))
        if p.hires_steps is not None:
            fields.append(("Hires steps", str(p.hires_steps)))
        fields.append(("Hires upscaler", _quote(HIRES_UPSCALER)))
    last = ", ".join(f"{k}: {v}" for k, v in fields)
    return f"{p.prompt}\nNegative prompt: {p.negative_prompt}\n{last}"


# key: value pairs, where a value may be a quoted string (A1111's re_param).
_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        body = value[1:-1]
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), body)
    return value


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
    params = {m.group(1).strip(): _unquote(m.group(2).strip()) for m in _PARAM.finditer(last)}
    width, height = (int(v) for v in params["Size"].split("x"))
    emphasis = {name: key for key, name in _EMPHASIS_NAMES.items()}.get(
        params.get("Emphasis", "Original"), "original"
    )
    hires_scale = params.get("Hires upscale")
    hires_steps = params.get("Hires steps")
    strength = params.get("Denoising strength") if hires_scale is not None else None
    return RenderParameters(
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines),
        steps=int(params["Steps"]),
        sampler=canonical_sampler(params["Sampler"]),
        guidance_scale=float(params["CFG scale"]),
        seed=int(params["Seed"]),
        width=width,
        height=height,
        model=params["Model"],
        emphasis=emphasis,
        hires_scale=float(hires_scale) if hires_scale is not None else None,
        hires_steps=int(hires_steps) if hires_steps is not None else None,
        denoising_strength=float(strength) if strength is not None else None,
    )
