"""Webhook signatures: the Standard Webhooks headers, and the farm's own ``Farm-Signature``.

Every delivery carries both (docs/CAMPAIGNS.md, "Signatures"):

- Standard Webhooks (https://www.standardwebhooks.com, as Replicate and Svix send):
  ``webhook-id`` (the event id: the same on every retry), ``webhook-timestamp`` (unix
  seconds of the attempt) and ``webhook-signature``: space-separated ``v1,<base64
  HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, where the key is the secret after
  ``whsec_``, base64-decoded (what the ``standardwebhooks`` libraries do);
- ``Farm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
  the format of earlier versions, keyed with the whole secret string.

While a rotated-out secret is in its grace period, both secrets sign: one ``v1`` per
secret in each header, so a receiver that knows either accepts the delivery.
``verify`` is what a receiver of ``Farm-Signature`` does; the farm uses it in its tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "sign",
    "signature_headers",
    "standard_key",
    "standard_signature",
    "verify",
]

SIGNATURE_HEADER = "Farm-Signature"
SIGNATURE_TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"


def sign(secret: str, timestamp: int, body: bytes, *more: str) -> str:
    """The ``Farm-Signature`` header value for ``body`` sent at ``timestamp`` (one ``v1``
    per secret: ``secret``, then ``more``)."""
    macs = [
        hmac.new(s.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        for s in (secret, *more)
    ]
    return f"t={timestamp}," + ",".join(f"v1={mac}" for mac in macs)


def standard_key(secret: str) -> bytes | None:
    """The HMAC key the Standard Webhooks libraries derive from ``secret``; None when they
    cannot (secrets issued before this format were URL-safe base64: rotate them)."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==", validate=False)
    except (binascii.Error, ValueError):
        return None
    return key or None


def standard_signature(
    secrets: Sequence[str], *, msg_id: str, timestamp: int, body: bytes
) -> str | None:
    """The ``webhook-signature`` value: ``v1,<base64>`` per usable secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for secret in secrets:
        key = standard_key(secret)
        if key is not None:
            mac = hmac.new(key, signed, hashlib.sha256).digest()
            parts.append("v1," + base64.b64encode(mac).decode())
    return " ".join(parts) or None


def signature_headers(
    secrets: Sequence[str], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Both signatures of one attempt, with ``secrets`` (current first) signing each."""
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        SIGNATURE_HEADER: sign(secrets[0], timestamp, body, *secrets[1:]),
    }
    standard = standard_signature(secrets, msg_id=msg_id, timestamp=timestamp, body=body)
    if standard is not None:
        headers["webhook-signature"] = standard
    return headers


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
