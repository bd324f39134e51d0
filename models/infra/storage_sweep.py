"""Removing and moving stored objects: expiry, deleted jobs and tenants, held images.

The ``Storage`` protocol (models/infra/storage.py) writes and reads one object at a
time; what deletes whole folders lives here, for both kinds of storage: S3 lists a
prefix page by page and deletes each page in one request (up to 1,000 keys), a local
folder is walked and emptied.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, Any

from models.infra.storage import LocalStorage, S3Storage, Storage

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

log = logging.getLogger(__name__)


def _unwrap(storage: Storage) -> Storage:
    """The storage under a wrapper that times it (worker/metrics.TimedStorage)."""
    inner: Any = getattr(storage, "inner", None)
    return _unwrap(inner) if inner is not None else storage


def folder_prefix(folder: str) -> str:
    """A folder as a key prefix that matches nothing outside it (``a/b`` is not ``a/bc``)."""
    return folder.rstrip("/") + "/"


def delete_folder(storage: Storage, prefix: str) -> int:
    """Delete every object under the folder ``prefix`` (it ends with ``/``); returns how many."""
    storage = _unwrap(storage)
    if not prefix.endswith("/") or not prefix.strip("/"):
        raise ValueError(f"not a folder prefix: {prefix!r}")
    if isinstance(storage, S3Storage):
        return _delete_s3_prefix(storage, prefix)
    if isinstance(storage, LocalStorage):
        return _delete_local_prefix(storage, prefix)
    raise TypeError(f"cannot delete from {type(storage).__name__}")


def delete_key(storage: Storage, key: str) -> bool:
    """Delete one object; False if it was not there."""
    storage = _unwrap(storage)
    if isinstance(storage, S3Storage):
        existed = storage.exists(key)
        storage.client.delete_object(Bucket=storage.bucket, Key=key)
        return existed
    if isinstance(storage, LocalStorage):
        path = storage.path(key)
        if not path.is_file():
            return False
        path.unlink()
        return True
    raise TypeError(f"cannot delete from {type(storage).__name__}")


def move(storage: Storage, source: str, target: str, *, content_type: str) -> None:
    """Copy ``source`` to ``target``, then delete ``source`` (a re-run after a crash in
    between finds ``target`` written and ``source`` possibly still there: same result)."""
    storage.put(target, storage.get(source), content_type=content_type)
    delete_key(storage, source)


def _delete_s3_prefix(storage: S3Storage, prefix: str) -> int:
    deleted = 0
    paginator = storage.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=storage.bucket, Prefix=prefix):
        keys: list[ObjectIdentifierTypeDef] = [
            {"Key": obj["Key"]} for obj in page.get("Contents", []) if "Key" in obj
        ]
        if not keys:
            continue
        answer = storage.client.delete_objects(
            Bucket=storage.bucket, Delete={"Objects": keys, "Quiet": True}
        )
        errors = answer.get("Errors", [])
        if errors:
            raise OSError(f"S3 refused to delete {len(errors)} object(s): {errors[0]}")
        deleted += len(keys)
    return deleted


def _delete_local_prefix(storage: LocalStorage, prefix: str) -> int:
    folder = storage.path(prefix.rstrip("/"))
    if not folder.is_dir():
        return 0
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder)
    return count
