"""Epoch milliseconds ⇄ ISO-8601 UTC, the one way times are written out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def epoch_ms(value: datetime) -> int:
    # Integer arithmetic: timestamp() * 1000 can land a millisecond short.
    return (value - _EPOCH) // timedelta(milliseconds=1)


def iso_time(value: datetime) -> str:
    return iso(epoch_ms(value))


def utc(ms: int) -> datetime:
    # Exact to the millisecond for any epoch-ms time a float carries (< 2**53), and twice
    # as fast as adding a timedelta. (Query parameters need none: the pool's timestamptz
    # codec takes epoch milliseconds, storage/db.py.)
    return datetime.fromtimestamp(ms / 1000, UTC)
