"""The times a schedule works with: aware instants in the years 2000-2999, IANA time zones.

The range keeps every date computation of a schedule (the catch-up window, jitter,
iterating a backfill) far from ``datetime``'s limits (years 1 and 9999), where it
would raise OverflowError instead of a ValueError that names the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["EARLIEST", "LATEST", "in_range", "input_utc", "to_utc", "validate_timezone", "zone"]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)  # exclusive


def in_range(value: datetime) -> datetime:
    """``value`` unchanged if it lies in [EARLIEST, LATEST); ValueError otherwise.

    Compares before converting anything: ``astimezone`` itself overflows near year 1.
    """
    if not EARLIEST <= value < LATEST:
        raise ValueError(
            f"must lie in the years {EARLIEST.year}-{LATEST.year - 1} (UTC), "
            f"got {value.isoformat()}"
        )
    return value


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def to_utc(value: datetime, name: str) -> datetime:
    """An aware ``value`` in UTC; ValueError naming ``name`` when it is naive."""
    _require_aware(value, name)
    return value.astimezone(UTC)


def input_utc(value: datetime, name: str) -> datetime:
    """A time given to the schedule: aware and in range, in UTC (ValueError naming ``name``).

    Ticks the schedule computes itself may lie a little past LATEST (the next tick).
    """
    _require_aware(value, name)
    try:
        in_range(value)
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None
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
