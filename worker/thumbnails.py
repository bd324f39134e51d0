"""Cell thumbnails for contact sheets: a byte-bounded cache of this worker's recent
ones, and the way back from storage for those made elsewhere."""

from __future__ import annotations

import io
import uuid
from collections import OrderedDict

from PIL import Image

from models.infra.storage import Storage
from worker.contact_sheet import make_thumbnail

THUMB_CACHE_BYTES = 64 * 2**20  # this worker's recent thumbnails, so sheets rarely re-read them


class ThumbnailCache:
    """Thumbnail bytes by (job, cell index), least recently stored first out."""

    def __init__(self, max_bytes: int = THUMB_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._thumbs: OrderedDict[tuple[uuid.UUID, int], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, job_id: uuid.UUID, index: int) -> bytes | None:
        return self._thumbs.get((job_id, index))

    def put(self, job_id: uuid.UUID, index: int, data: bytes) -> None:
        self._thumbs[(job_id, index)] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, old = self._thumbs.popitem(last=False)
            self._bytes -= len(old)

    def forget(self, job_id: uuid.UUID) -> None:
        for key in [k for k in self._thumbs if k[0] == job_id]:
            self._bytes -= len(self._thumbs.pop(key))


def store_thumbnail(storage: Storage, thumb_key: str, image: Image.Image) -> bytes:
    data = make_thumbnail(image)
    storage.put(thumb_key, data, content_type="image/jpeg")
    return data


def stored_thumbnail(storage: Storage, *, thumb_key: str, image_key: str) -> bytes | None:
    """The thumbnail in storage; made from the stored image (and stored) when it is not
    there: made elsewhere and not yet uploaded, or handed over without its image."""
    data = _get(storage, thumb_key)
    if data is not None:
        return data
    png = _get(storage, image_key)
    if png is None:
        return None
    return store_thumbnail(storage, thumb_key, Image.open(io.BytesIO(png)))


def _get(storage: Storage, key: str) -> bytes | None:
    try:
        return storage.get(key)
    except Exception:  # missing (FileNotFoundError, S3 NoSuchKey) or unreachable
        return None
