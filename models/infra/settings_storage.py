"""Storage settings beyond the bucket: where keys start, whose credentials sign, how
often readiness asks the store. A mixin of ``Settings`` (models/infra/settings.py)."""

from __future__ import annotations

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    s3_prefix: str = "renders"
    # Empty: boto3's own chain (AWS_* variables, IRSA, an instance role). Set, they win:
    # a process can name its store's keys without touching the AWS environment.
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    storage_check_s: float = 5.0  # /readyz asks the store at most this often

    @field_validator("s3_prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        """Every key starts with the prefix. A ``.`` or ``..`` segment is rewritten by
        servers after the request was signed (a signature mismatch), and an empty one
        (``a//b``) is a different key to some stores: refuse them at start."""
        prefix = value.strip("/")
        if not prefix:
            return prefix
        bad = [p for p in prefix.split("/") if p in ("", ".", "..")]
        if bad or not prefix.isprintable():
            raise ValueError(
                f"FARM_S3_PREFIX={value!r} has an empty, '.' or '..' segment or a control "
                "character: object keys must be plain path segments, such as 'renders'"
            )
        return prefix
