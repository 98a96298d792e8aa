"""Closed hours of `fixes` packed one row per device-hour into `fixes_hours` (migration
0027): a column's values of the device's fixes of that UTC hour in one array each, in
(ts, seq) order. ~120 fixes share one row's overhead, one key and one compressed value per
column: ~46 bytes a fix, where a row per fix costs ~185 even packed (docs/benchmarks.md).

Ingest keeps COPYing a row per fix into `fixes`; every hour that ended more than AFTER
ago is packed, one hour per transaction: its rows are deleted from `fixes` and merged into
the device-hours (a late fix joins the hour packed before it) by one statement, so a run
stopped anywhere leaves each fix either still a row or packed, never both nor neither.
Fixes in the default partition stay rows: a day without a partition is archived already
or far ahead, and those of an archived day follow it there (storage.archiving). Only fixes
every shard's newest snapshot has judged (rid at most the lowest `last_rid`)
are packed: a restore finds what it re-judges (`rid > last_rid`) in `fixes`, and a later
run packs the rest. The pages the rows leave are given back by a VACUUM of the partitions
packed: today's are reused by the fixes that follow, an emptied day's file is truncated.

A redelivery of a packed fix: ingest refuses it (storage.fixes probes the device-hour of
each fix received more than storage.fixes.LATE_MS after it was taken), and should one slip
past that probe, the next packing keeps the hour's copy only.

Runs after the archive's move, hourly in the service and in `fencewatch archive run`, under
the archive's lock: no move or purge changes a device-hour while it is packed."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from storage.archiving import LOCK_ID, ended, snapshot_floor
from storage.db import Conn
from storage.hours import FIELDS, regroup

log = logging.getLogger("fencewatch.compaction")

AFTER = timedelta(hours=1)  # an hour's fixes still arriving in bulk just after it ends

# One hour [$1, $1 + 1 h) of rows judged up to rid $2, with the device-hours already
# packed (late fixes): where both hold a fix, the packed copy is kept.
_PACK = (
    "WITH moved AS (DELETE FROM fixes WHERE ts >= $1 AND ts < $1 + interval '1 hour'"
    f" AND rid <= $2 AND tableoid <> 'fixes_default'::regclass RETURNING device_id, {FIELDS}),"
    " merged AS (SELECT DISTINCT ON (device_id, ts, seq) * FROM ("
    f"  SELECT 0 AS packed, device_id, {FIELDS} FROM fixes_packed"
    "   WHERE hour = $1 AND device_id IN (SELECT device_id FROM moved)"
    f"  UNION ALL SELECT 1, device_id, {FIELDS} FROM moved) m"
    "  ORDER BY device_id, ts, seq, packed),"
    f" packed AS ({regroup('merged', '$1::timestamptz')} RETURNING 1)"
    " SELECT (SELECT count(*) FROM moved) AS fixes, (SELECT count(*) FROM packed) AS hours"
)


async def run(pool: asyncpg.Pool, now: datetime, after: timedelta = AFTER) -> dict[str, Any]:
    """Pack every hour that ended `after` before `now` (at least AFTER) and still has rows;
    returns {"hours": [...], "fixes": n, "device_hours": n}, and "skipped" when a move or a
    purge held the archive's lock."""
    done: dict[str, Any] = {"hours": [], "fixes": 0, "device_hours": 0}
    horizon = _hour(now - max(after, AFTER))  # the end of the newest hour to pack
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            done["skipped"] = "an archive move or purge is in progress"
            return done
        try:
            floor = await snapshot_floor(conn)
            limit = floor if floor is not None else 2**63 - 1
            todo = await conn.fetch(
                "SELECT date_trunc('hour', ts, 'UTC') AS hour,"
                " array_agg(DISTINCT tableoid::regclass::text) AS parts FROM fixes"
                " WHERE ts < $1 AND rid <= $2 AND tableoid <> 'fixes_default'::regclass"
                " GROUP BY 1 ORDER BY 1",
                horizon,
                limit,
            )
            for r in todo:
                t0 = time.perf_counter()
                async with conn.transaction():
                    counts = await pack(conn, r["hour"], limit)
                done["hours"].append(r["hour"])
                done["fixes"] += counts["fixes"]
                done["device_hours"] += counts["hours"]
                log.info(
                    "compaction: packed %s (%d fixes into %d device-hours) in %.1f s",
                    r["hour"].isoformat(),
                    counts["fixes"],
                    counts["hours"],
                    time.perf_counter() - t0,
                )
            await _give_back(conn, {p for r in todo for p in r["parts"]}, horizon)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    return done


async def pack(conn: Conn, hour: datetime, limit: int) -> dict[str, int]:
    """Pack the rows of `hour` with a rid up to `limit`, inside the caller's transaction:
    {"fixes": rows packed, "hours": device-hours written}."""
    row = await conn.fetchrow(_PACK, hour, limit)
    assert row is not None
    return {"fixes": int(row["fixes"]), "hours": int(row["hours"])}


async def _give_back(conn: Conn, parts: set[str], horizon: datetime) -> None:
    """The pages the packed rows of `parts` leave: a VACUUM makes them free for the rows
    that follow, and truncates a heap left empty; a B-tree does not shrink, so that of a
    day over and now empty is built again (a few pages) without holding up anyone."""
    over = {p.name for p in await ended(conn, horizon)}
    for part in sorted(parts):
        await conn.execute(f'VACUUM "{part}"')
        if part in over and not await conn.fetchval(f'SELECT EXISTS (SELECT FROM "{part}")'):
            await conn.execute(f'REINDEX TABLE CONCURRENTLY "{part}"')


def _hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
