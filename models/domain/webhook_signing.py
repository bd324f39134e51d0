"""The webhook signature: ``Farm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC key is the tenant's secret, the message ``"<t>.<raw body>"``. ``verify`` is
what a receiver does (docs/CAMPAIGNS.md has a standalone copy for receivers); the
farm uses it in its tests.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "SIGNATURE_TOLERANCE_S", "sign", "verify"]

SIGNATURE_HEADER = "Farm-Signature"
SIGNATURE_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Farm-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: a v1 signature matches and the timestamp is recent."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [v for k, v in fields if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rsplit("v1=", 1)[1]
    return any(k.strip() == "v1" and hmac.compare_digest(v, expected) for k, v in fields)
