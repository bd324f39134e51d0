"""A lean S3 PUT: botocore's own SigV4 signer, one pooled HTTP connection, no client stack.

Every rendered image is uploaded (and its thumbnail): two PUTs per image on each GPU
host. Through ``boto3``'s ``put_object`` a PUT cost ~2-3 ms of CPU (endpoint rules,
parameter validation, serialisation, event hooks, response parsing) beside the
~0.2 ms of signing it needs. This signs with ``botocore.auth.S3SigV4Auth`` (the code
boto3 runs, so the signature is the one S3, MinIO and R2 expect) and sends the body
with urllib3. Reads, listings and presigned URLs stay on boto3.

Retries follow boto3's ``standard`` mode in spirit: connection errors, 5xx, 429 and
S3's throttling answers are tried again with jittered exponential backoff.
"""

from __future__ import annotations

import random
import re
import time
from urllib.parse import quote

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from models.infra.storage_errors import StorageError, is_permanent_status

MAX_ATTEMPTS = 5
BACKOFF_S = 0.1  # first retry waits up to this; doubles each time (boto3: base 1 s, max 20 s)
TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)
_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{1,300})</Message>")


def _tag(pattern: re.Pattern[bytes], body: bytes) -> str:
    """A field of S3's XML error body, if it has one."""
    found = pattern.search(body)
    return found.group(1).decode(errors="replace") if found else ""


class S3PutError(StorageError):
    def __init__(self, status: int, body: bytes) -> None:
        code, message = _tag(_CODE, body), _tag(_MESSAGE, body)
        super().__init__(
            f"S3 PUT answered {status} {code}: {message or body[:300]!r}",
            permanent=is_permanent_status(status, code),
            status=status,
        )
        self.code = code


def object_url(*, endpoint_url: str | None, region: str, bucket: str, key: str) -> str | None:
    """Where an object lives: path style under a configured endpoint (MinIO, R2, moto),
    virtual-hosted on AWS. None where boto3's own rules are needed (dotted bucket names)."""
    path = quote(key, safe="/~")
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/{bucket}/{path}"
    if not _DNS_BUCKET.fullmatch(bucket):
        return None
    return f"https://{bucket}.s3.{region}.amazonaws.com/{path}"


class SignedPut:
    """PUTs objects to one bucket. Thread-safe: the writer and artifact threads share it."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        region: str,
        bucket: str,
        endpoint_url: str | None,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.credentials = credentials
        self.region = region
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.backoff_s = backoff_s
        self.http = urllib3.PoolManager(maxsize=8, retries=False, timeout=TIMEOUT)

    def url(self, key: str) -> str | None:
        return object_url(
            endpoint_url=self.endpoint_url, region=self.region, bucket=self.bucket, key=key
        )

    def put(self, url: str, data: bytes, *, content_type: str) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                status, body = self._send(url, data, content_type)
            except (urllib3.exceptions.HTTPError, OSError):
                if attempt == MAX_ATTEMPTS:
                    raise
            else:
                if status < 300:
                    return
                error = S3PutError(status, body)
                if error.permanent or attempt == MAX_ATTEMPTS:
                    raise error
            time.sleep(random.uniform(0, self.backoff_s * 2 ** (attempt - 1)))

    def _send(self, url: str, data: bytes, content_type: str) -> tuple[int, bytes]:
        request = AWSRequest(
            method="PUT",
            url=url,
            data=data,
            headers={"Content-Type": content_type, "Content-Length": str(len(data))},
        )
        # Frozen per request: refreshable credentials (IRSA, instance roles) renew here.
        frozen = self.credentials.get_frozen_credentials()
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        headers = dict(request.headers.items())
        response = self.http.request("PUT", url, body=data, headers=headers, preload_content=True)
        return response.status, response.data
