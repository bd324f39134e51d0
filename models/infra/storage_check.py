"""Is the object store there, and do our keys open it? A worker asks once at start (it
refuses to start otherwise); ``/readyz`` asks at most every ``FARM_STORAGE_CHECK_S``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from models.infra.settings import Settings
from models.infra.storage import LocalStorage, S3Storage, Storage, make_storage
from models.infra.storage_errors import StorageError

# Outside every tenant's folder: retention and deletions never touch it, and it is
# overwritten by each start, never accumulated.
PROBE_NAME = "_farm/worker-probe"


def probe_key(prefix: str) -> str:
    return f"{prefix}/{PROBE_NAME}".lstrip("/")


def check_writes(storage: Storage, *, prefix: str) -> None:
    """One tiny PUT the way images go (the lean signed PUT on S3): proves the endpoint,
    the bucket, the keys and the right to write. Raises ``StorageError``."""
    try:
        storage.put(probe_key(prefix), b"ok", content_type="text/plain")
    except OSError as exc:  # a local folder that cannot be written
        raise StorageError(f"storage folder not writable: {exc}", permanent=True) from exc


def refuse_without_storage(settings: Settings) -> None:
    """A worker whose images could not land must not take work: exit with the reason."""
    try:
        check_writes(make_storage(settings), prefix=settings.s3_prefix)
    except StorageError as exc:
        where = f"bucket {settings.s3_bucket!r}" if settings.s3_bucket else "the storage folder"
        raise SystemExit(
            f"storage check failed, not starting: {exc}. Check {where}, FARM_S3_ENDPOINT_URL "
            "and the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
            "FARM_S3_ACCESS_KEY_ID/FARM_S3_SECRET_ACCESS_KEY)."
        ) from exc


def check_reads(storage: Storage) -> None:
    """What the API needs: S3's HeadBucket (a signed request, no object); a local folder
    that exists and can be written. Raises ``StorageError``."""
    if isinstance(storage, S3Storage):
        storage.check()
    elif isinstance(storage, LocalStorage):
        storage.root.mkdir(parents=True, exist_ok=True)
        if not os.access(storage.root, os.W_OK):
            raise StorageError(f"storage folder {storage.root} is not writable", permanent=True)


@dataclass(frozen=True)
class StorageStatus:
    ok: bool
    refused: bool  # the store refused our keys or bucket: a fix is needed, not a wait
    message: str  # "ok", or "error: ..." naming what the store said


class StorageProbe:
    """``check_reads`` with its answer kept for ``interval_s``: a probe storm on
    ``/readyz`` costs the store one request per interval per process."""

    def __init__(
        self,
        storage: Storage,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.interval_s = interval_s
        self.clock = clock
        self.checks = 0  # requests made to the store
        self._lock = threading.Lock()
        self._answer: StorageStatus | None = None
        self._at = 0.0

    def status(self) -> StorageStatus:
        with self._lock:  # one request at a time; the others wait and share its answer
            if self._answer is None or self.clock() - self._at >= self.interval_s:
                self._answer = self._ask()
                self._at = self.clock()
            return self._answer

    def _ask(self) -> StorageStatus:
        self.checks += 1
        try:
            check_reads(self.storage)
        except StorageError as exc:
            return StorageStatus(False, exc.permanent, f"error: {exc}")
        except Exception as exc:  # anything else the store's client raised
            return StorageStatus(False, False, f"error: {exc.__class__.__name__}: {exc}")
        return StorageStatus(True, False, "ok")
