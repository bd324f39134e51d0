"""Which storage failures are permanent (fail the cells now) and which transient (retry):
boto3's errors as botocore raises them, and the lean PUT's."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from models.infra.s3_put import S3PutError
from models.infra.storage_errors import StorageError, check_key, storage_errors


def _client_error(status: int, code: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}  # what botocore fills in
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (403, "SignatureDoesNotMatch", True),
        (403, "InvalidAccessKeyId", True),
        (403, "AccessDenied", True),
        (403, "403", True),  # a HEAD: no body, only the status
        (404, "NoSuchBucket", True),
        (400, "InvalidRequest", True),
        (301, "PermanentRedirect", True),
        (400, "RequestTimeout", False),
        (403, "RequestTimeTooSkewed", False),  # the clock is fixed by NTP, not by us
        (429, "TooManyRequests", False),
        (503, "SlowDown", False),
        (500, "InternalError", False),
    ],
)
def test_client_errors(status: int, code: str, permanent: bool) -> None:
    with pytest.raises(StorageError) as caught, storage_errors():
        raise _client_error(status, code)
    assert caught.value.permanent is permanent
    assert caught.value.status == status


def test_no_credentials_is_permanent_and_no_connection_is_not() -> None:
    with pytest.raises(StorageError) as caught, storage_errors():
        raise NoCredentialsError()
    assert caught.value.permanent
    with pytest.raises(StorageError) as caught, storage_errors():
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert not caught.value.permanent
    with pytest.raises(StorageError) as caught, storage_errors():
        raise ConnectionResetError()
    assert not caught.value.permanent


def test_the_lean_put_reads_the_code_from_the_body() -> None:
    body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
    assert not S3PutError(503, body).permanent
    refused = S3PutError(403, body.replace(b"SlowDown", b"InvalidAccessKeyId"))
    assert refused.permanent and refused.code == "InvalidAccessKeyId"
    assert "Reduce your rate" in str(refused)


@pytest.mark.parametrize("key", ["", "a//b", "./a", "a/.", "a/../b", "/a"])
def test_unsafe_keys(key: str) -> None:
    with pytest.raises(StorageError) as caught:
        check_key(key)
    assert caught.value.permanent


def test_plain_keys_pass() -> None:
    assert check_key("renders/t/j/000001_1024x1024_s7.png") == "renders/t/j/000001_1024x1024_s7.png"
    assert check_key("a/.hidden/..x/x..") == "a/.hidden/..x/x.."
