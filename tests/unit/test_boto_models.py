"""botocore sessions share one loader of botocore's JSON models (models/infra/boto_models.py)
and nothing else: each S3Storage keeps its own credentials."""

from __future__ import annotations

from models.infra.boto_models import botocore_session
from models.infra.storage import S3Storage


def test_sessions_share_the_parsed_models_not_the_credentials() -> None:
    first, second = botocore_session(), botocore_session()
    assert first is not second
    assert first.get_component("data_loader") is second.get_component("data_loader")
    one = S3Storage(
        bucket="b", endpoint_url="http://127.0.0.1:9", access_key_id="k1", secret_access_key="s1"
    )
    two = S3Storage(
        bucket="b", endpoint_url="http://127.0.0.1:9", access_key_id="k2", secret_access_key="s2"
    )
    # Each signs with its own key: the client's presigned URL names it.
    urls = [
        s.client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
        for s in (one, two)
    ]
    assert "X-Amz-Credential=k1%2F" in urls[0] and "X-Amz-Credential=k2%2F" in urls[1]
