"""fencewatch.timefmt: times as every message and file writes them."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from fencewatch.timefmt import epoch_ms, iso


def test_iso_writes_milliseconds_in_utc() -> None:
    assert iso(1796674173520) == "2026-12-07T20:09:33.520Z"
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(-1) == "1969-12-31T23:59:59.999Z"


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_iso_is_the_time_to_the_millisecond(value: datetime) -> None:
    value = value.replace(microsecond=value.microsecond // 1000 * 1000, tzinfo=UTC)
    assert iso(epoch_ms(value)) == value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
