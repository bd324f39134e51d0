"""The names a spec uses from the operator's prompt library: styles and wildcards exist.

Checked before any text is built, so that a 422 names the field and the name: a style
(``style``, ``style.1``), a combinatorial wildcard (``wildcard_axes.0``: it must exist
and be used by some text of the job, directly or through a list), and each wildcard a
prompt, the negative prompt or a style uses itself (``prompts.2``: unknown wildcard
``__hair__``), with the wildcard syntax of each of those texts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.prompt_pipeline import PromptLibrary
from models.domain.spec import JobSpec
from models.domain.tags import compose
from models.domain.wildcards import WildcardError, has_syntax, parse_template, references

_SHOWN = 20  # names listed in an "unknown" message


def _known(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _matches(name: str, library: PromptLibrary) -> list[str]:
    if "*" in name:
        return sorted(n for n in library.wildcards if fnmatch.fnmatchcase(n, name))
    return [name] if name in library.wildcards else []


def _templates(spec: JobSpec, library: PromptLibrary) -> Iterator[tuple[str, str]]:
    """(field, text) for each text the job's wildcards are resolved in."""
    quality, position = spec.quality_tags, spec.quality_tags_position
    for i, entry in enumerate(spec.prompts):
        yield f"prompts.{i}", compose(entry, quality_tags=quality, position=position)
    negative = DEFAULT_NEGATIVE_PROMPT if spec.negative_prompt is None else spec.negative_prompt
    yield "negative_prompt", negative
    for field, name in _style_fields(spec):
        style = library.styles.get(name)
        if style is not None:
            yield field, style.prompt
            yield field, style.negative_prompt


def _style_fields(spec: JobSpec) -> Iterator[tuple[str, str]]:
    for i, name in enumerate(spec.style_list()):
        yield (f"style.{i}" if isinstance(spec.style, list) else "style"), name


def check_names(spec: JobSpec, library: PromptLibrary) -> list[tuple[str, str]]:
    """(field, reason) for each name the library does not have, or syntax it cannot read."""
    found: list[tuple[str, str]] = []
    for field, name in _style_fields(spec):
        if name not in library.styles:
            found.append((field, f"unknown style {name!r}; styles: {_known(list(library.styles))}"))
    used: set[str] = set()
    for field, text in _templates(spec, library):
        if not has_syntax(text):
            continue
        try:
            nodes = parse_template(text)
        except WildcardError as exc:
            found.append((field, str(exc)))
            continue
        for name in references(nodes):
            matched = _matches(name, library)
            if not matched:
                lists = _known(sorted(library.wildcards)) or "none"
                found.append((field, f"unknown wildcard __{name}__; wildcard lists: {lists}"))
            used.update(matched)
    reachable = _reachable(used, library)
    for i, name in enumerate(spec.wildcard_axes or []):
        field = f"wildcard_axes.{i}"
        if name not in library.wildcards:
            lists = _known(sorted(library.wildcards)) or "none"
            found.append((field, f"unknown wildcard __{name}__; wildcard lists: {lists}"))
        elif name not in reachable:
            found.append(
                (field, f"__{name}__ is in no prompt, negative prompt or style of this job")
            )
    return found


def _reachable(names: set[str], library: PromptLibrary) -> set[str]:
    """``names`` and every list their values use, transitively."""
    seen = set(names)
    queue = list(names)
    while queue:
        for value in library.wildcards.get(queue.pop(), ()):
            if not has_syntax(value):
                continue
            try:
                nested = list(references(parse_template(value)))
            except WildcardError:
                continue  # the operator's list: reported when a cell resolves it
            for name in nested:
                for match in _matches(name, library):
                    if match not in seen:
                        seen.add(match)
                        queue.append(match)
    return seen
