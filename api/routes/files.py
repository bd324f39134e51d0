"""Serves the local storage folder through signed, expiring URLs (embedded mode)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import State
from api.errors import ApiError
from models.infra.storage import LocalStorage

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}")
def get_file(key: str, expires: int, sig: str, state: State) -> FileResponse:
    storage = state.storage
    if not isinstance(storage, LocalStorage):
        raise ApiError(404, "files are served by the object store, not the API")
    if not storage.verify(key, expires, sig):
        raise ApiError(404, "no such file, or the link has expired")
    try:
        path = storage.path(key)
    except ValueError:
        raise ApiError(404, "no such file") from None
    if not path.is_file():
        raise ApiError(404, "no such file")
    return FileResponse(path)
