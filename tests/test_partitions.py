"""Monthly partitions of `fixes` (storage/partitions.py): several processes starting at
once (ingest workers) all come up, and each month's partition exists once."""

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
        made = await asyncio.gather(*(partitions.ensure(c, date(2031, 5, 9)) for c in conns))
        names = sorted(n for m in made for n in m)
        assert names == ["fixes_2031_04", "fixes_2031_05", "fixes_2031_06", "fixes_2031_07"]
    finally:
        for c in conns:
            await c.close()
