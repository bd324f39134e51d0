"""Where images go: S3-compatible object storage or a local folder, behind one interface."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlencode

from models.infra.settings import Settings
from models.infra.storage_errors import check_key, storage_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Storage(Protocol):
    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def url(self, key: str, *, expires_s: int) -> str: ...
    def exists(self, key: str) -> bool: ...


def job_folder(*, prefix: str, tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """Where everything of one job lives: images, thumbs/, sheets/, manifest, gallery."""
    return f"{prefix}/{tenant_id}/{job_id}".lstrip("/")


def image_key(
    *, prefix: str, tenant_id: uuid.UUID, job_id: uuid.UUID, index: int, bucket: str, seed: int
) -> str:
    """Pure function of (job, cell): a re-render overwrites, never duplicates."""
    folder = job_folder(prefix=prefix, tenant_id=tenant_id, job_id=job_id)
    return f"{folder}/{image_name(index=index, bucket=bucket, seed=seed)}"


# A job folder's layout, as names relative to the folder (the gallery links relatively).
MANIFEST_NAME = "manifest.json"
GALLERY_NAME = "index.html"


def image_name(*, index: int, bucket: str, seed: int) -> str:
    return f"{index:06d}_{bucket}_s{seed}.png"


def thumb_name(image: str) -> str:
    """thumbs/<image stem>.jpg: the small copy that contact sheets and galleries show."""
    return f"thumbs/{image.rsplit('/', 1)[-1].removesuffix('.png')}.jpg"


def sheet_name(prompt_index: int) -> str:
    return f"sheets/prompt_{prompt_index:03d}.jpg"


def best_sheet_name(prompt_index: int) -> str:
    """The prompt's "best of" sheet: its top cells by score (worker/best_of.py)."""
    return f"sheets/best_{prompt_index:03d}.jpg"


class S3Storage:
    """Errors come out as ``StorageError`` (models/infra/storage_errors.py), permanent or
    not; a key with an empty, ``.`` or ``..`` segment is refused before it is signed."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        access_key_id: str = "",
        secret_access_key: str = "",
    ) -> None:
        # boto3 only where S3 is used: local storage (embedded mode, the GPU kit) runs
        # without it.
        import boto3.session
        from botocore.config import Config

        from models.infra.boto_models import botocore_session
        from models.infra.s3_put import SignedPut

        self.bucket = bucket
        # Standard mode retries 5xx, throttling and connection errors with backoff.
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4")
        # Given keys win; none: boto3's chain (AWS_* variables, IRSA, an instance role).
        session = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key if access_key_id else None,
            botocore_session=botocore_session(),
        )
        self.client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._session, self._endpoint_url = session, endpoint_url
        self._check_client: S3Client | None = None
        credentials = session.get_credentials()
        # PUTs (two per rendered image) skip the client stack: models/infra/s3_put.py.
        self.signed_put = (
            None
            if credentials is None
            else SignedPut(
                credentials=credentials,
                region=self.client.meta.region_name,
                bucket=bucket,
                endpoint_url=endpoint_url,
            )
        )

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        check_key(key)
        url = None if self.signed_put is None else self.signed_put.url(key)
        with storage_errors():
            if self.signed_put is None or url is None:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
                )
                return
            self.signed_put.put(url, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        with storage_errors():
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()

    def url(self, key: str, *, expires_s: int) -> str:
        with storage_errors():  # signed locally: only missing credentials fail here
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": check_key(key)},
                ExpiresIn=expires_s,
            )

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with storage_errors():
            try:
                self.client.head_object(Bucket=self.bucket, Key=check_key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def check(self) -> None:
        """One signed request that needs no object: HeadBucket (s3:ListBucket), tried
        once with short timeouts: a readiness probe must answer before its own deadline.
        Raises ``StorageError``."""
        from botocore.config import Config

        if self._check_client is None:
            quick = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1})
            self._check_client = self._session.client(
                "s3", endpoint_url=self._endpoint_url, config=self.client.meta.config.merge(quick)
            )
        with storage_errors():
            self._check_client.head_bucket(Bucket=self.bucket)


class LocalStorage:
    """A folder on disk; URLs point at the API's signed ``/files`` route."""

    def __init__(self, *, root: Path, base_url: str, secret: bytes) -> None:
        self.root = root.resolve()
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key {key!r} escapes the storage folder")
        return path

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see half a file

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, key: str, *, expires_s: int) -> str:
        expires = int(time.time()) + expires_s
        query = urlencode({"expires": expires, "sig": self.signature(key, expires)})
        return f"{self.base_url}/files/{quote(key)}?{query}"

    def verify(self, key: str, expires: int, sig: str) -> bool:
        return expires >= time.time() and hmac.compare_digest(self.signature(key, expires), sig)


def make_storage(settings: Settings) -> Storage:
    if settings.s3_bucket:
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        )
    return LocalStorage(
        root=settings.local_storage_dir,
        base_url=settings.public_base_url,
        secret=settings.url_signing_secret(),
    )
