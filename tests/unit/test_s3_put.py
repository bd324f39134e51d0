"""The lean S3 PUT (models/infra/s3_put.py) against a signature-checking S3 server
(SeaweedFS), and its retries against an HTTP endpoint that fails on purpose."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.credentials import Credentials

from models.infra.s3_put import S3PutError, SignedPut, object_url
from models.infra.storage import S3Storage
from tests.s3_servers import S3Server


@pytest.mark.parametrize(
    "key",
    [
        "plain/000001_1024x1024_s7.png",
        "spaces and (parens)/a+b=c&d.png",
        "unicode/ミク_初音/✓.png",
        "tilde~and%percent/x.png",
    ],
)
def test_put_lands_as_boto3_reads_it(strict_s3: S3Server, key: str) -> None:
    """Signed as a signature-checking server (SeaweedFS) expects, odd characters and all."""
    s3 = strict_s3
    storage = S3Storage(
        bucket=s3.bucket,
        endpoint_url=s3.endpoint_url,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
    )
    assert storage.signed_put is not None  # the lean path is the one under test
    data = hashlib.sha256(key.encode()).digest() * 1000
    storage.put(key, data, content_type="image/png")
    stored = s3.client().get_object(Bucket=s3.bucket, Key=key)
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/png"
    assert storage.exists(key)


def test_an_unknown_bucket_is_refused(s3: S3Server) -> None:
    # moto: SeaweedFS makes a missing bucket on an admin's first PUT.
    missing = SignedPut(
        credentials=Credentials(s3.access_key, s3.secret_key),
        region="us-east-1",
        bucket="no-such-bucket",
        endpoint_url=s3.endpoint_url,
    )
    url = missing.url("x.png")
    assert url is not None
    with pytest.raises(S3PutError) as refused:
        missing.put(url, b"x", content_type="image/png")
    assert refused.value.status == 404


class _Flaky(BaseHTTPRequestHandler):
    """Answers the first ``failures`` PUTs with ``status``, then 200."""

    failures = 0
    status = 503
    seen: list[str] = []  # noqa: RUF012 - one server per test

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        self.rfile.read(length)
        type(self).seen.append(self.headers.get("Authorization", ""))
        failing = len(type(self).seen) <= type(self).failures
        self.send_response(type(self).status if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[type[_Flaky]]:
    handler = type("Flaky", (_Flaky,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.endpoint = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def _put_to(flaky: type[_Flaky]) -> tuple[SignedPut, str]:
    endpoint: str = flaky.endpoint  # type: ignore[attr-defined]
    put = SignedPut(
        credentials=Credentials("ak", "sk"),
        region="us-east-1",
        bucket="b",
        endpoint_url=endpoint,
        backoff_s=0.001,
    )
    url = put.url("k.png")
    assert url == f"{endpoint}/b/k.png"
    return put, url


def test_throttling_and_5xx_are_retried(flaky: type[_Flaky]) -> None:
    flaky.failures, flaky.status = 3, 503
    put, url = _put_to(flaky)
    put.put(url, b"png", content_type="image/png")
    assert len(flaky.seen) == 4
    assert all(a.startswith("AWS4-HMAC-SHA256 Credential=ak/") for a in flaky.seen)


def test_retries_end_with_the_error(flaky: type[_Flaky]) -> None:
    flaky.failures, flaky.status = 99, 500
    put, url = _put_to(flaky)
    with pytest.raises(S3PutError, match="500") as failed:
        put.put(url, b"png", content_type="image/png")
    assert len(flaky.seen) == 5
    assert not failed.value.permanent  # the cell is tried again later


def test_client_errors_are_not_retried(flaky: type[_Flaky]) -> None:
    flaky.failures, flaky.status = 99, 403
    put, url = _put_to(flaky)
    with pytest.raises(S3PutError, match="403") as refused:
        put.put(url, b"png", content_type="image/png")
    assert len(flaky.seen) == 1
    assert refused.value.permanent  # the cell fails at once


def test_object_urls() -> None:
    assert (
        object_url(endpoint_url="http://minio:9000/", region="r", bucket="b", key="a b/c.png")
        == "http://minio:9000/b/a%20b/c.png"
    )
    assert (
        object_url(endpoint_url=None, region="eu-west-1", bucket="farm-images", key="t/x.png")
        == "https://farm-images.s3.eu-west-1.amazonaws.com/t/x.png"
    )
    # Dotted names need boto3's addressing rules: the caller falls back to put_object.
    assert object_url(endpoint_url=None, region="eu-west-1", bucket="a.b.c", key="x") is None
