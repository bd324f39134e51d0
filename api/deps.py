"""Request dependencies: the app's state, a DB session, and "this tenant's object or 404".

Who the caller is comes from api/auth.py (one way in for every route).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from api.key_cache import KeyCache
from api.limits import RateLimiter
from models.infra.encryption import SecretBox
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.infra.storage import Storage
from models.infra.storage_check import StorageProbe
from models.service.submit import Submitter

T = TypeVar("T")


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    publisher: Publisher
    limiter: RateLimiter
    key_cache: KeyCache
    submitter: Submitter

    @cached_property
    def storage_probe(self) -> StorageProbe:
        """``/readyz``'s storage check, its answer kept a few seconds."""
        return StorageProbe(self.storage, interval_s=self.settings.storage_check_s)

    @cached_property
    def secret_box(self) -> SecretBox:
        """Encrypts webhook secrets at rest; built on first use (it may read a key file)."""
        return SecretBox.from_settings(self.settings)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.farm
    return state


State = Annotated[AppState, Depends(get_state)]


def get_session(state: State) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]
# The page size of every list (``{items, next_cursor}``).
Limit = Annotated[int, Query(ge=1, le=1000)]


def owned_or_404(kind: str, raw_id: str, load: Callable[[uuid.UUID], T | None]) -> T:
    """``load`` the tenant's object with this id, or 404: another tenant's object, like a
    malformed id, does not exist."""
    try:
        parsed = uuid.UUID(raw_id)
    except ValueError:
        raise ApiError(404, f"no {kind} {raw_id!r}") from None
    found = load(parsed)
    if found is None:
        raise ApiError(404, f"no {kind} {raw_id!r}")
    return found
