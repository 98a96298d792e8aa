"""The pool's timestamptz codec: the hot path hands times over as epoch milliseconds, the
rest of the code as datetimes; both must land as the same instant and read back as UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from storage.db import open_pool


async def test_times_go_in_as_epoch_ms_or_datetimes_and_come_back_as_utc(pg_dsn) -> None:
    pool = await open_pool(pg_dsn, min_size=1, max_size=1)
    try:
        instant = datetime(2026, 11, 27, 12, 30, 15, 123000, tzinfo=UTC)
        beijing = instant.astimezone(timezone(timedelta(hours=8)))
        for value in (1_795_782_615_123, instant, beijing):
            got = await pool.fetchval("SELECT $1::timestamptz", value)
            assert got == instant and got.tzinfo is not None
            # The database sees the same instant as its own clock would write it.
            assert await pool.fetchval(
                "SELECT $1::timestamptz = '2026-11-27 12:30:15.123+00'", value
            )
        before_epoch = await pool.fetchval("SELECT $1::timestamptz", -86_400_000)
        assert before_epoch == datetime(1969, 12, 31, tzinfo=UTC)
        # A naive datetime or a date is local time, as asyncpg itself takes them.
        local_noon = datetime(2026, 11, 27, 12, 0)
        assert await pool.fetchval("SELECT $1::timestamptz", local_noon) == local_noon.astimezone(
            UTC
        )
        midnight = datetime(2026, 11, 27).astimezone(UTC)
        assert await pool.fetchval("SELECT $1::timestamptz", date(2026, 11, 27)) == midnight
        arrays = await pool.fetchval("SELECT $1::timestamptz[]", [1_795_782_615_123, instant])
        assert arrays == [instant, instant]
    finally:
        await pool.close()
