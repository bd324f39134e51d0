"""What a storage failure means: permanent (the store refuses this request and will
refuse it again: bad credentials, no such bucket, a malformed key) or transient (5xx,
throttling, timeouts, connection resets: worth another try).

``S3Storage`` raises :class:`StorageError` for both; the worker fails cells at once on a
permanent one instead of rendering them again (docs/RELIABILITY.md), and the API answers
502 (refused) or 503 (unavailable) naming storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# 4xx answers that another try could change: timeouts, conflicts in flight, throttling.
_TRANSIENT_4XX = frozenset({408, 409, 425, 429, 499})
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}
)


class StorageError(Exception):
    """The object store failed a request; ``permanent`` says whether to try again."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class UnsafeKey(StorageError, ValueError):
    """A key no store can sign reliably: an empty, ``.`` or ``..`` segment."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"object key {key!r} has an empty, '.' or '..' segment", permanent=True, status=None
        )


def check_key(key: str) -> str:
    """The key, if every segment is plain. S3 servers normalise ``.``/``..`` in the path
    after the client signed it: the request is refused, or lands elsewhere."""
    if not key or any(p in ("", ".", "..") for p in key.split("/")):
        raise UnsafeKey(key)
    return key


def is_permanent_status(status: int, code: str = "") -> bool:
    if code in _TRANSIENT_CODES:
        return False
    return 300 <= status < 500 and status not in _TRANSIENT_4XX  # 301: wrong region/endpoint


def from_status(status: int, code: str, detail: str) -> StorageError:
    permanent = is_permanent_status(status, code)
    kind = "refused" if permanent else "failed"
    return StorageError(
        f"storage {kind} the request: {status} {code or 'error'}{': ' + detail if detail else ''}",
        permanent=permanent,
        status=status,
    )


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn boto3's and the lean PUT's errors into :class:`StorageError`."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    from urllib3.exceptions import HTTPError

    try:
        yield
    except StorageError:
        raise
    except ClientError as exc:
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code", ""))
        status = int(meta.get("HTTPStatusCode") or (code if code.isdigit() else 0))
        code = "" if code.isdigit() else code  # a HEAD has no body: only its status
        raise from_status(status, code, str(error.get("Message", ""))) from exc
    except NoCredentialsError as exc:
        raise StorageError(f"storage has no credentials: {exc}", permanent=True) from exc
    except (BotoCoreError, HTTPError, OSError) as exc:  # connection refused/reset, timeouts
        raise StorageError(f"storage unreachable: {exc!r}", permanent=False) from exc
