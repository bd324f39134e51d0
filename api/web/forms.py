"""The web pages' forms: parsing a url-encoded body, the same-origin check, form → spec."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, Request

from api.errors import ApiError

Fields = dict[str, list[str]]


async def form_fields(request: Request) -> Fields:
    """An ``application/x-www-form-urlencoded`` body (the only kind these forms send)."""
    if request.method == "POST" and not _same_origin(request):
        raise ApiError(403, "cross-site form posts are refused")
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


Form = Annotated[Fields, Depends(form_fields)]


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def first(form: Fields, name: str, default: str = "") -> str:
    return form.get(name, [default])[0].strip()


def _number(text: str, kind: type[int] | type[float]) -> int | float | str:
    """``text`` as a number when it is one in plain ASCII, else the text itself (the
    spec's validation then names the field). ``int("²")`` raises: isdigit() is not
    enough."""
    if not text.isascii():
        return text
    try:
        return kind(text)
    except ValueError:
        return text


def spec_from_form(form: Fields) -> dict[str, Any]:
    """Form fields to a grid spec; what cannot be parsed goes through as text for the
    spec's own validation to name."""
    spec: dict[str, Any] = {
        "prompts": [p.strip() for p in first(form, "prompts").splitlines() if p.strip()],
        "buckets": form.get("buckets") or ["1024x1024"],
        "quality_tags": first(form, "quality_tags") == "on",
        "sampler": first(form, "sampler", "euler_a"),
    }
    for name in ("name", "negative_prompt", "model", "priority"):
        if first(form, name):
            spec[name] = first(form, name)
    seeds = first(form, "seeds").replace(",", " ").split()
    if seeds:
        spec["seeds"] = [_number(s, int) for s in seeds]
    for name, kind in (("steps", int), ("guidance_scale", float)):
        value = first(form, name)
        if value:
            spec[name] = _number(value, kind)
    return spec


def refine_from_form(form: Fields) -> dict[str, Any]:
    """The job page's refine form to a refinement request (models/domain/refine.py): the
    ticked cells (or the "top" button's k), hires, more like N, and the overrides given."""
    body: dict[str, Any] = {}
    cells = first(form, "cells").replace(",", " ").split()
    if first(form, "top"):
        body["top"] = _number(first(form, "top"), int)
        body["per_prompt"] = first(form, "per_prompt") == "on"
    elif cells:
        body["cells"] = [_number(c, int) for c in cells]
    if first(form, "hires") == "on":
        body["hires"] = True
    if first(form, "more_like"):
        body["more_like"] = _number(first(form, "more_like"), int)
    overrides: dict[str, Any] = {}
    if first(form, "sampler"):
        overrides["sampler"] = first(form, "sampler")
    if first(form, "steps"):
        overrides["steps"] = _number(first(form, "steps"), int)
    if first(form, "guidance_scale"):
        overrides["guidance_scale"] = _number(first(form, "guidance_scale"), float)
    if overrides:
        body["set"] = overrides
    return body
