"""A move killed with SIGKILL at a chosen point (tests/test_archive.py): run as
`python -m tests.archive_crash <dsn> <archive dir or s3:// URL> <now iso> <point>`, it dies
there (an S3 archive's endpoint in FENCEWATCH_ARCHIVE_S3_ENDPOINT).

Points: `detached` (a partition detached, nothing written), `written` (its files written
and checked, the ledger not yet told), `dropping` (ledger rows inserted and the partition
about to be dropped, uncommitted)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime
from typing import Any

from storage import archiving
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
    pool = await open_pool(dsn, min_size=1, max_size=2)
    archive = Archive(where, os.environ.get("FENCEWATCH_ARCHIVE_S3_ENDPOINT") or None)
    await archiving.run(pool, archive, datetime.fromisoformat(now), 7)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
