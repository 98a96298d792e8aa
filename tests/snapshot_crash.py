"""A snapshot killed with SIGKILL between its parts (tests/test_snapshots.py): run as
`python -m tests.snapshot_crash <dsn> <parts>`, it writes a snapshot of the people come
back home (last_rid 99), in parts of 7, and dies once `parts` of them are sent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

from ingest.shards import Shard
from storage import snapshots
from storage.db import open_pool
from tests.test_shards import PEOPLE
from tests.test_snapshots import moved_on, walk


async def main(dsn: str, parts: int) -> None:
    snapshots.PART = 7
    engine = moved_on()
    walk(engine, PEOPLE[:20], 2)
    rows = snapshots._rows

    async def rows_then_die(snapshot: int, capture: snapshots.Capture) -> AsyncIterator[bytes]:
        sent = -1  # the first is COPY's header
        async for row in rows(snapshot, capture):
            yield row
            sent += 1
            if sent == parts:
                await asyncio.sleep(0.5)  # what was sent reaches PostgreSQL
                os.kill(os.getpid(), signal.SIGKILL)

    snapshots._rows = rows_then_die  # type: ignore[assignment]
    pool = await open_pool(dsn, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await snapshots.save(conn, Shard(0, 1), snapshots.Capture(engine.state, 99, 0))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
