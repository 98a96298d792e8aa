"""Closed hours of `fixes` packed one row per device-hour into `fixes_hours` (migration
0027): a column's values of the device's fixes of that UTC hour in one array each, in
(ts, seq) order. ~120 fixes share one row's overhead, one key and one compressed value per
column: ~46 bytes a fix, where a row per fix costs ~185 even packed (docs/benchmarks.md).

Ingest keeps COPYing a row per fix into `fixes`; every hour that ended more than AFTER
ago is packed in pieces of whole device-hours, about PIECE fixes each (a range of
device_id), one transaction a piece: its rows are deleted from `fixes` and merged into the
device-hours (a late fix joins the hour packed before it) by one statement, so a run
stopped anywhere leaves each fix either still a row or packed, never both nor neither.
An hour of 100,000 tags is 12 M fixes, minutes of work on two cores: in pieces, no
transaction holds more than a second's work, and after each piece the run rests REST
times as long as the piece took, longer while ingest runs behind (storage.pacing): at
REST 1 alone, half a core of PostgreSQL put ingest's commits seconds behind on a busy
2-core box (docs/benchmarks.md, "Packing an hour of 100,000 tags").
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
from storage.pacing import LagReader, Pace

log = logging.getLogger("fencewatch.compaction")

AFTER = timedelta(hours=1)  # an hour's fixes still arriving in bulk just after it ends
PIECE = 20_000  # fixes a transaction, in whole device-hours: ~0.5 s at ~40k fixes/s
REST = 2.0  # seconds of rest after a piece, per second it took

_ROWS = "ts >= $1 AND ts < $1 + interval '1 hour' AND rid <= $2"
# An hour's rows are read from its partition by name, not from `fixes` less the default
# partition: PostgreSQL estimates `tableoid <> 'fixes_default'` to keep one row, and an
# hour of 100,000 tags (12 M rows) was then sorted on disk, 14–20 s a query at load 9.


def _ends(part: str) -> str:
    """Where the pieces of about $2 fixes of hour $1 in `part` end: each device whose
    fixes take the hour's running count (in device_id order) across a multiple of $2.
    Counted without the snapshot's bound on rid (a piece packs only what it allows)."""
    return (
        "SELECT device_id FROM (SELECT device_id, count(*) AS n,"
        f'  sum(count(*)) OVER (ORDER BY device_id) AS upto FROM "{part}"'
        "  WHERE ts >= $1 AND ts < $1 + interval '1 hour' GROUP BY device_id) d"
        " WHERE floor(upto / $2) > floor((upto - n) / $2) ORDER BY device_id"
    )


def _pack_sql(part: str, first: bool, last: bool) -> str:
    """The rows of hour [$1, $1 + 1 h) in `part` judged up to rid $2 of the devices after
    $3 (with `first`) up to the next parameter (with `last`) packed, with their
    device-hours already packed (late fixes): where both hold a fix, the packed copy is
    kept. Each bound is in the text only when there is one, so that it bounds the scan of
    the primary key (an `$n IS NULL OR` would not, in a generic plan)."""
    devices = "".join(
        ([" AND device_id > $3"] if first else [])
        + ([f" AND device_id <= ${3 + first}"] if last else [])
    )
    return (
        f'WITH moved AS (DELETE FROM "{part}" WHERE {_ROWS}{devices}'
        f" RETURNING device_id, {FIELDS}),"
        " merged AS (SELECT DISTINCT ON (device_id, ts, seq) * FROM ("
        f"  SELECT 0 AS packed, device_id, {FIELDS} FROM fixes_packed"
        "   WHERE hour = $1 AND device_id IN (SELECT device_id FROM moved)"
        f"  UNION ALL SELECT 1, device_id, {FIELDS} FROM moved) m"
        "  ORDER BY device_id, ts, seq, packed),"
        f" packed AS ({regroup('merged', '$1::timestamptz')} RETURNING 1)"
        " SELECT (SELECT count(*) FROM moved) AS fixes, (SELECT count(*) FROM packed) AS hours"
    )


async def run(
    pool: asyncpg.Pool,
    now: datetime,
    after: timedelta = AFTER,
    piece: int = PIECE,
    rest: float = REST,
    lag: LagReader | None = None,
) -> dict[str, Any]:
    """Pack every hour that ended `after` before `now` (at least AFTER) and still has rows,
    in pieces of about `piece` fixes, resting after each (storage.pacing: `rest` times its
    time, more while `lag` says ingest is behind); returns {"hours": [...], "fixes": n,
    "device_hours": n, "pieces": n, "longest_s": the longest piece's transaction,
    "rested_s": n, "gave_way": pieces after which ingest was behind}, and "skipped" when a
    move or a purge held the archive's lock."""
    done: dict[str, Any] = {
        "hours": [],
        "fixes": 0,
        "device_hours": 0,
        "pieces": 0,
        "longest_s": 0.0,
        "rested_s": 0.0,
        "gave_way": 0,
    }
    pace = Pace(rest, lag)
    horizon = _hour(now - max(after, AFTER))  # the end of the newest hour to pack
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            done["skipped"] = "an archive move or purge is in progress"
            return done
        try:
            floor = await snapshot_floor(conn)
            limit = floor if floor is not None else 2**63 - 1
            # A few groups, hashed: a DISTINCT within an aggregate sorted every row (12 M
            # an hour at 100,000 tags: 46 s under ingest's load). A partition's range holds
            # whole hours; those in the default partition stay rows.
            todo = {
                (r["hour"], r["part"])
                for r in await conn.fetch(
                    "SELECT date_trunc('hour', ts, 'UTC') AS hour,"
                    " tableoid::regclass::text AS part FROM fixes"
                    " WHERE ts < $1 AND rid <= $2 GROUP BY 1, 2",
                    horizon,
                    limit,
                )
                if r["part"] != "fixes_default"
            }
            for hour, part in sorted(todo):
                t0, fixes, pieces = time.perf_counter(), done["fixes"], done["pieces"]
                await _pack_hour(conn, part, hour, limit, piece, pace, done)
                done["hours"].append(hour)
                log.info(
                    "compaction: packed %s (%d fixes in %d pieces) in %.1f s",
                    hour.isoformat(),
                    done["fixes"] - fixes,
                    done["pieces"] - pieces,
                    time.perf_counter() - t0,
                )
            await _give_back(conn, {part for _, part in todo}, horizon)
            done["rested_s"], done["gave_way"] = round(pace.rested_s, 1), pace.gave_way
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    return done


async def _pack_hour(
    conn: Conn,
    part: str,
    hour: datetime,
    limit: int,
    piece: int,
    pace: Pace,
    done: dict[str, Any],
) -> None:
    """Pack `hour` of partition `part` a piece a transaction, from the first device_id to
    the last; the last piece takes what follows the last end found."""
    ends = [r["device_id"] for r in await conn.fetch(_ends(part), hour, max(piece, 1))]
    for first, last in zip([None, *ends], [*ends, None], strict=True):
        t0 = time.perf_counter()
        async with conn.transaction():
            counts = await pack(conn, part, hour, limit, first, last)
        took = time.perf_counter() - t0
        done["fixes"] += counts["fixes"]
        done["device_hours"] += counts["hours"]
        done["pieces"] += 1
        done["longest_s"] = max(done["longest_s"], took)
        if last is not None:
            await pace.after(took)


async def pack(
    conn: Conn,
    part: str,
    hour: datetime,
    limit: int,
    first: str | None = None,
    last: str | None = None,
) -> dict[str, int]:
    """Pack the rows of `hour` in partition `part` with a rid up to `limit` of the devices
    after `first` up to `last` (each unbounded when None), inside the caller's
    transaction: {"fixes": rows packed, "hours": device-hours written}."""
    bounds = [b for b in (first, last) if b is not None]  # $3, $4 as far as they go
    sql = _pack_sql(part, first is not None, last is not None)
    row = await conn.fetchrow(sql, hour, limit, *bounds)
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
