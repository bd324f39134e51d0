"""The times a schedule works with: aware instants, IANA time zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["as_utc", "validate_timezone", "zone"]


def as_utc(value: datetime, name: str) -> datetime:
    """An aware ``value`` in UTC; ValueError naming ``name`` when it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def validate_timezone(name: str) -> ZoneInfo:
    """An IANA time zone by name (``Europe/Berlin``); ValueError naming the zone otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin"
        ) from exc


def zone(tz: ZoneInfo | str) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else validate_timezone(tz)
