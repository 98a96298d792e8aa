"""A move or a packing killed with SIGKILL at a chosen point (tests/test_archive.py): run
as `python -m tests.archive_crash <dsn> <archive dir or s3:// URL> <now iso> <point>`, it
dies there (an S3 archive's endpoint in FENCEWATCH_ARCHIVE_S3_ENDPOINT).

Points: `detached` (a partition detached, nothing written), `appended` (in pieces of 100
fixes: the first piece of its first day appended to the day's file, the next not begun),
`written` (its files written and checked, the ledger not yet told), `dropping` (ledger rows
inserted and the partition about to be dropped, uncommitted); of a packing
(storage.compaction): `packing` (an hour's rows deleted and its device-hours written,
uncommitted), `packed` (one hour committed, the next not begun), `pieced` (in pieces of one
device-hour: the first committed, the next not begun)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime
from typing import Any

from storage import archiving, compaction
from storage.archive import Archive
from storage.db import open_pool


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(dsn: str, where: str, now: str, point: str) -> None:
    if point == "detached":
        archiving._move_partition = lambda *a: _die()  # type: ignore[assignment]
    elif point == "written":
        archiving._record = lambda *a: _die()  # type: ignore[assignment]
    elif point == "dropping":
        record = archiving._record

        async def record_then_die(conn: Any, files: Any) -> None:
            await record(conn, files)
            _die()

        archiving._record = record_then_die  # type: ignore[assignment]
    elif point in ("packing", "packed", "pieced"):
        pack, calls = compaction.pack, []

        async def pack_then_die(*args: Any) -> dict[str, int]:
            calls.append(args)
            if point in ("packed", "pieced") and len(calls) > 1:
                _die()
            done = await pack(*args)
            if point == "packing":
                _die()
            return done

        compaction.pack = pack_then_die  # type: ignore[assignment]
        pool = await open_pool(dsn, min_size=1, max_size=2)
        piece = 1 if point == "pieced" else compaction.PIECE
        await compaction.run(pool, datetime.fromisoformat(now), piece=piece, rest=0)
        return
    elif point == "appended":
        csv, pieces = archiving._Move._csv, []

        async def csv_or_die(*args: Any) -> bytes:
            pieces.append(args)
            if len(pieces) > 1:
                _die()
            return await csv(*args)

        archiving._Move._csv = staticmethod(csv_or_die)  # type: ignore[method-assign]
    pool = await open_pool(dsn, min_size=1, max_size=2)
    archive = Archive(where, os.environ.get("FENCEWATCH_ARCHIVE_S3_ENDPOINT") or None)
    piece = 100 if point == "appended" else archiving.PIECE
    await archiving.run(pool, archive, datetime.fromisoformat(now), 7, piece=piece, rest=0)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
