"""Secrets at rest: webhook signing secrets are stored encrypted (Fernet, from
``cryptography``), never in plaintext.

``FARM_ENCRYPTION_KEYS`` is a comma-separated list of Fernet keys (``farm keys
encryption-key`` prints a new one): the first encrypts, every one decrypts, so a key is
rotated by putting a new one first and re-encrypting (``SecretBox.rotate``). Left empty,
one key is derived from ``FARM_SECRET_KEY`` (or the random key kept in
``FARM_DATA_DIR``): every API and beat process must then share that value.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from models.infra.settings import Settings

__all__ = ["InvalidToken", "SecretBox", "new_key"]


def new_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts short secrets with the configured keys."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("no encryption key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        configured = [k.strip() for k in settings.encryption_keys.split(",") if k.strip()]
        if configured:
            try:
                return cls([k.encode() for k in configured])
            except ValueError as exc:
                raise ValueError(
                    f"FARM_ENCRYPTION_KEYS: each key must be 32 url-safe base64 bytes ({exc})"
                ) from None
        digest = hashlib.sha256(b"farm-secrets-at-rest\0" + settings.url_signing_secret())
        return cls([base64.urlsafe_b64encode(digest.digest())])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; ``InvalidToken`` if no configured key made ``ciphertext``."""
        return self._fernet.decrypt(ciphertext.encode()).decode()

    def rotate(self, ciphertext: str) -> str:
        """``ciphertext`` re-encrypted with the first key."""
        return self._fernet.rotate(ciphertext.encode()).decode()
