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
