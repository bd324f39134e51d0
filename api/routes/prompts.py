"""/v1/styles, /v1/wildcards and /v1/loras: the operator's prompt library, for clients to
pick from.

Styles are listed whole (their prompt and negative parts: a JSON styles file has this
layout, so the list can seed one); wildcard lists by name and size, and one list's
values by its name. Lists page like every list: ``{items, next_cursor}``, in name order,
the cursor being the last name of the page.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from pydantic import BaseModel

from api.auth import TenantId
from api.deps import Limit, State
from api.errors import ApiError
from models.domain.loras import LoraUnavailable

router = APIRouter(prefix="/v1", tags=["prompts"])


class StyleOut(BaseModel):
    name: str
    prompt: str
    negative_prompt: str


class StylePage(BaseModel):
    items: list[StyleOut]
    next_cursor: str | None


class WildcardOut(BaseModel):
    name: str  # used as __name__
    size: int


class WildcardPage(BaseModel):
    items: list[WildcardOut]
    next_cursor: str | None


class WildcardValues(BaseModel):
    name: str
    values: list[str]


class LoraOut(BaseModel):
    """An enabled LoRA: a request names it (``loras``, ``lora_sets``, ``<lora:name:w>``)."""

    name: str
    hash: str | None  # A1111's and Civitai's short hash (12 hex digits); null: unavailable
    sha256: str | None  # of the file's tensor data (A1111's LoRA hash, whole)
    base_model: str | None  # the family it was built for (null: the file does not say)
    trigger_words: list[str]
    source: str  # where the operator loads it from: check its licence there
    url: str | None  # where it was published, as the operator says
    available: bool
    error: str | None  # why it cannot be used now


class LoraPage(BaseModel):
    items: list[LoraOut]
    next_cursor: str | None


def _page(names: Sequence[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    after = [n for n in sorted(names) if cursor is None or n > cursor]
    page = after[:limit]
    return page, page[-1] if len(after) > limit else None


@router.get("/styles")
def list_styles(
    state: State, _tenant: TenantId, cursor: str | None = None, limit: Limit = 100
) -> StylePage:
    styles = state.settings.prompt_library.styles
    names, next_cursor = _page(list(styles), cursor, limit)
    items = [
        StyleOut(name=n, prompt=styles[n].prompt, negative_prompt=styles[n].negative_prompt)
        for n in names
    ]
    return StylePage(items=items, next_cursor=next_cursor)


@router.get("/wildcards")
def list_wildcards(
    state: State, _tenant: TenantId, cursor: str | None = None, limit: Limit = 100
) -> WildcardPage:
    lists = state.settings.prompt_library.wildcards
    names, next_cursor = _page(list(lists), cursor, limit)
    items = [WildcardOut(name=n, size=len(lists[n])) for n in names]
    return WildcardPage(items=items, next_cursor=next_cursor)


@router.get("/wildcards/{name:path}")
def get_wildcard(name: str, state: State, _tenant: TenantId) -> WildcardValues:
    values = state.settings.prompt_library.wildcards.get(name)
    if values is None:
        raise ApiError(404, f"no wildcard list {name!r}")
    return WildcardValues(name=name, values=list(values))


@router.get("/loras")
def list_loras(
    state: State, _tenant: TenantId, cursor: str | None = None, limit: Limit = 100
) -> LoraPage:
    catalog = state.settings.lora_catalog
    names, next_cursor = _page(list(catalog), cursor, limit)
    items = []
    for name in names:
        config = catalog.configs[name]
        try:
            info = catalog[name]
        except LoraUnavailable as exc:
            items.append(
                LoraOut(
                    name=name,
                    hash=None,
                    sha256=None,
                    base_model=config.base_model,
                    trigger_words=config.trigger_words,
                    source=config.source,
                    url=config.url,
                    available=False,
                    error=str(exc),
                )
            )
            continue
        items.append(
            LoraOut(
                name=name,
                hash=info.sha256[:12],
                sha256=info.sha256,
                base_model=info.base_model,
                trigger_words=list(info.trigger_words),
                source=info.source,
                url=info.url,
                available=True,
                error=None,
            )
        )
    return LoraPage(items=items, next_cursor=next_cursor)
