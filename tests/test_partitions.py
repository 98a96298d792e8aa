"""Daily partitions of `fixes` (storage/partitions.py): several processes starting at
once (ingest workers) all come up, and each day's partition exists once."""

from __future__ import annotations

import asyncio
from datetime import date

import asyncpg

from storage import partitions
from storage.db import open_pool


async def test_processes_starting_together_each_get_their_partitions(pg_dsn: str) -> None:
    pool = await open_pool(pg_dsn, min_size=1, max_size=1)
    await pool.close()  # the schema is migrated
    conns = [await asyncpg.connect(pg_dsn) for _ in range(4)]
    try:
        made = await asyncio.gather(
            *(partitions.ensure(c, date(2031, 5, 30), ahead=3) for c in conns)
        )
        names = sorted(n for m in made for n in m)
        assert names == [
            "fixes_2031_05_29",
            "fixes_2031_05_30",
            "fixes_2031_05_31",
            "fixes_2031_06_01",
            "fixes_2031_06_02",
        ]
    finally:
        for c in conns:
            await c.close()


async def test_an_earlier_versions_monthly_partition_keeps_its_days(pg_dsn: str) -> None:
    """Upgraded from monthly partitions: the days a month's partition holds stay there
    (the archive moves it whole); daily ones start after it."""
    pool = await open_pool(pg_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE fixes_2031_05 PARTITION OF fixes"
                " FOR VALUES FROM ('2031-05-01 00:00+00') TO ('2031-06-01 00:00+00')"
            )
            made = await partitions.ensure(conn, date(2031, 5, 30), ahead=3)
    finally:
        await pool.close()
    assert made == ["fixes_2031_06_01", "fixes_2031_06_02"]
