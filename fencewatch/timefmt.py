"""Epoch milliseconds ⇄ ISO-8601 UTC, the one way times are written out."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ms: int) -> str:
    # Each second written once: the live feed writes every fix's time (5 % of an ingest
    # worker's interpreter at 100,000 tags), and a batch's fixes share their seconds.
    second, milli = divmod(ms, 1000)
    return f"{_second(second)}.{milli:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second(s: int) -> str:
    return datetime.fromtimestamp(s, UTC).replace(tzinfo=None).isoformat()


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
