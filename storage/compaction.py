"""Closed days of `fixes` written again packed: each daily partition whose UTC day ended
more than an hour ago is copied in (device_id, ts, seq) order into a new table whose
primary key is built by sorting, every page full, and swapped in for the old one.

Why: every device inserts into the middle of a day's primary key, so its pages split and
stay half empty (88 → 45 bytes a fix once built packed), and a person-day is scattered
over the whole day's heap, one fix per page (after: a few consecutive pages). Today's
partition is never rewritten; a closed day only gets late fixes, which still go in (to the
end of the packed table, splitting an index page here and there) and read as before.

Never blocking ingest: the copy reads under MVCC while late fixes keep arriving in the old
partition. Before it starts, every transaction that may hold a `rid` at most S (the
sequence's value then) has ended, so the copy sees each of those fixes; the swap — one
short transaction that gives up after LOCK_TIMEOUT rather than hold ingest behind it —
adds the fixes with a rid above S the copy did not see, detaches and drops the old table
and attaches the new one, whose CHECK on the day's bounds spares ATTACH a scan of it (it
still reads the default partition, which holds only stray fixes). A run stopped anywhere
leaves the old partition attached and at most an unattached copy, which the next run
drops. `rid` keeps its values: a restore's `rid > last_rid` still finds late fixes through
the BRIN index (each block range of a packed day spans that day's rids, all below a recent
snapshot's).

Runs after the archive's move, hourly in the service and in `fencewatch archive run`, under
the archive's lock, one day at a time: no move or purge changes a partition while it is
copied, and a purge waits for one day's packing at most."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from storage.archiving import LOCK_ID, Partition, ended
from storage.db import Conn

log = logging.getLogger("fencewatch.compaction")

GRACE = timedelta(hours=1)  # a day's fixes still arriving in bulk just after it ends
LOCK_TIMEOUT = "2s"
SWAPS, SWAP_PAUSE_S = 5, 10.0  # tries at the short lock before giving up till next run
WAIT_S = 60.0  # for transactions older than the copy to end, before giving up till next run
_SUFFIX = "_packed"


async def run(pool: asyncpg.Pool, now: datetime) -> dict[str, Any]:
    """Pack every closed day not yet packed; returns {"partitions": [...], "fixes": n}, and
    "skipped" when a move or a purge held the archive's lock. One day at a time under the
    lock: a purge waiting for it goes between two days, and the rest wait for the next run."""
    done: dict[str, Any] = {"partitions": [], "fixes": 0}
    tried: set[str] = set()
    async with pool.acquire() as conn:
        while True:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
                done["skipped"] = "an archive move or purge is in progress"
                return done
            try:
                await _drop_leftovers(conn)
                todo = [p for p in await _unpacked(conn, now - GRACE) if p.name not in tried]
                if not todo:
                    return done
                part = todo[0]
                tried.add(part.name)
                t0 = time.perf_counter()
                fixes = await pack(conn, part)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
            if fixes is not None:
                done["partitions"].append(part.name)
                done["fixes"] += fixes
                log.info(
                    "compaction: packed %s (%d fixes) in %.1f s",
                    part.name,
                    fixes,
                    time.perf_counter() - t0,
                )


async def _unpacked(conn: Conn, cutoff: datetime) -> list[Partition]:
    """The daily partitions of `fixes` ended by `cutoff` and not packed, oldest first (a
    monthly partition of an earlier version waits for its move as it is)."""
    return [
        p
        for p in await ended(conn, cutoff)
        if p.hi - p.lo == timedelta(days=1) and not await _packed(conn, p.name)
    ]


async def pack(conn: Conn, part: Partition) -> int | None:
    """Write `part` again packed; its fixes, or None when it could not be swapped this
    time (it stays as it was)."""
    name, lo, hi = part.name, part.lo, part.hi
    new = name + _SUFFIX
    seen = await conn.fetchval("SELECT last_value FROM fixes_rid_seq")
    # Read after `seen`: a transaction that drew a rid up to `seen` began before this.
    since = await conn.fetchval("SELECT clock_timestamp()")
    if not await _older_transactions_ended(conn, since):
        log.warning("compaction: %s waits for the next run (a long transaction)", name)
        return None
    async with conn.transaction():
        await conn.execute(f'CREATE TABLE "{new}" (LIKE fixes)')
        await conn.execute(
            f'INSERT INTO "{new}" SELECT * FROM "{name}" ORDER BY device_id, ts, seq'
        )
        await conn.execute(
            f'ALTER TABLE "{new}" ADD CONSTRAINT "{new}_pkey"'
            " PRIMARY KEY (device_id, ts, seq) WITH (fillfactor = 100)"
        )
        await conn.execute(f'CREATE INDEX "{new}_rid" ON "{new}" USING brin (rid)')
        await conn.execute(
            f'ALTER TABLE "{new}" ADD CONSTRAINT "{new}_bounds"'
            f" CHECK (ts >= '{lo.isoformat()}' AND ts < '{hi.isoformat()}')"
        )
    # Frozen and all-visible now, so that no later vacuum writes the day once more.
    await conn.execute(f'VACUUM (FREEZE, ANALYZE) "{new}"')
    for attempt in range(SWAPS):
        try:
            return await _swap(conn, part, new, seen)
        except asyncpg.LockNotAvailableError:
            log.info("compaction: %s busy (swap %d of %d)", name, attempt + 1, SWAPS)
            await asyncio.sleep(SWAP_PAUSE_S)
        except BaseException:
            await conn.execute(f'DROP TABLE IF EXISTS "{new}"')
            raise
    log.warning("compaction: %s could not be swapped in; it waits for the next run", name)
    await conn.execute(f'DROP TABLE "{new}"')
    return None


async def _swap(conn: Conn, part: Partition, new: str, seen: int) -> int:
    """In one short transaction: the late fixes the copy did not see added to `new`, and
    `new` in the place of `part`."""
    name, lo, hi = part.name, part.lo, part.hi
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute(f'ALTER TABLE fixes DETACH PARTITION "{name}"')
        await conn.execute(
            f'INSERT INTO "{new}" SELECT * FROM "{name}" WHERE rid > $1 ON CONFLICT DO NOTHING',
            seen,
        )
        await conn.execute(f'DROP TABLE "{name}"')
        await conn.execute(f'ALTER TABLE "{new}" RENAME TO "{name}"')
        await conn.execute(f'ALTER INDEX "{new}_pkey" RENAME TO "{name}_pkey"')
        await conn.execute(f'ALTER INDEX "{new}_rid" RENAME TO "{name}_rid_idx"')
        await conn.execute(
            f'ALTER TABLE fixes ATTACH PARTITION "{name}"'
            f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        )
        await conn.execute(f'ALTER TABLE "{name}" DROP CONSTRAINT "{new}_bounds"')
        fixes: int = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
    return fixes


async def _packed(conn: Conn, table: str) -> bool:
    """Whether `table`'s primary key was built packed (by `pack`)."""
    return bool(
        await conn.fetchval(
            "SELECT coalesce(k.reloptions @> ARRAY['fillfactor=100'], false) FROM pg_index x"
            " JOIN pg_class k ON k.oid = x.indexrelid"
            " WHERE x.indrelid = $1::regclass AND x.indisprimary",
            f'"{table}"',
        )
    )


async def _older_transactions_ended(conn: Conn, since: datetime) -> bool:
    """Wait (up to WAIT_S) until no other session of this database is in a transaction
    begun at or before `since` (sessions of the service's own role, or any when it may read
    all statistics: pg_stat_activity shows others' transactions to neither)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        older = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " AND xact_start <= $1)",
            since,
        )
        if not older:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def _drop_leftovers(conn: Conn) -> None:
    """Drop the copies a stopped run left unattached."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE 'fixes\\_%'"
        f" AND c.relname LIKE '%{_SUFFIX}' AND NOT c.relispartition"
    )
    for r in rows:
        await conn.execute(f'DROP TABLE "{r["relname"]}"')
        log.info("compaction: dropped %s, left by a stopped run", r["relname"])
