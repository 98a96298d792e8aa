"""A person's fixes across both tiers — PostgreSQL (recent hours a row each, closed hours
packed a device-hour a row (storage.compaction), and any partition in the middle of a move)
and the archive (storage.archive) — read and deleted through one place.

The tiers never hold the same fix: a move commits its ledger rows in the transaction that
takes the fixes out of PostgreSQL (storage.archiving), and a read lists the ledger and reads
PostgreSQL in one snapshot, so it sees each fix exactly once whenever a move commits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from storage.archive import E7, Archive, at_ms
from storage.archiving import detached
from storage.db import Conn
from storage.hours import ARRAYS, FIELDS, regroup, union

# The devices person $1 has ever worn: a fix's person is its wearer when it was judged, so
# their fixes are found through the primary key (device_id, ts, seq) (migration 0021).
DEVICES_OF = "ARRAY(SELECT device_id FROM device_assignments WHERE supervisee_id = $1)"
_TRACK = (
    f"device_id = ANY({DEVICES_OF}) AND supervisee_id = $1 AND ts >= $2 AND ts < $3"
    " AND lat IS NOT NULL"
)
TRACK_COLUMNS = "ts, device_id AS device, seq, lat, lon, acc, src, batt, quality, zone_state"
_ARCHIVED_TRACK = (
    "SELECT epoch_ms(ts) AS ts, device_id AS device, seq, lat, lon, acc, src, batt, quality,"
    " zone_state FROM read_parquet($files) WHERE supervisee_id = $supervisee"
    " AND ts >= $start AND ts < $end AND lat IS NOT NULL ORDER BY ts, device, seq LIMIT $limit"
)


async def track(
    conn: Conn, archive: Archive, supervisee: str, start: datetime, end: datetime, limit: int
) -> list[Mapping[str, Any]]:
    """Fixes with a position in [start, end), oldest first, at most `limit`; fixes without
    one are not part of a track. Each row: ts, device, seq, lat, lon, acc, src, batt,
    quality, zone_state."""
    async with _snapshot(conn):
        hot = await conn.fetch(
            f"SELECT {TRACK_COLUMNS} FROM {await hot_relation(conn, _TRACK, '$2', '$3')}"
            " ORDER BY ts, device_id, seq LIMIT $4",
            supervisee,
            start,
            end,
            limit,
        )
        keys = await _keys(conn, _day(start), _day(end - timedelta(microseconds=1)))
    # PostgreSQL's rows as asyncpg gives them: a person-day is thousands, and a dict each
    # cost a quarter of reading them.
    rows = cast(list[Mapping[str, Any]], hot)
    if keys:
        params = {"supervisee": supervisee, "start": start, "end": end, "limit": limit}
        found = await asyncio.to_thread(archive.query, _ARCHIVED_TRACK, keys, params)
        rows += [_archived(r) for r in found]
        rows.sort(key=lambda r: (r["ts"], r["device"], r["seq"]))
    return rows[:limit]


async def purge(
    conn: Conn, archive: Archive, supervisee: str, before: datetime, *, dry_run: bool = False
) -> tuple[dict[str, int], list[str]]:
    """Delete the person's fixes older than `before` from both tiers, inside the caller's
    transaction; returns the counts ({"fixes", "archived_fixes"}) and the archive files
    that no longer belong to the archive once it commits (the caller deletes them then:
    `discard`). Each file holding some is written again without them and checked — every
    other fix of it still there, unchanged, and none of theirs — before the ledger takes
    it. A device-hour packed across `before` keeps its fixes after it. The caller holds
    storage.archiving.LOCK_ID, so no move or packing runs meanwhile."""
    hot = await _purge_packed(conn, supervisee, before, dry_run)
    # `ts < before` visits only the partitions older than `before`: no index needed.
    for table in ["fixes", *(p.name for p in await detached(conn))]:
        where = f'FROM "{table}" WHERE supervisee_id = $1 AND ts < $2'
        if dry_run:
            hot += int(await conn.fetchval(f"SELECT count(*) {where}", supervisee, before))
        else:
            status = await conn.execute(f"DELETE {where}", supervisee, before)
            hot += int(status.rsplit(" ", 1)[-1])
    ledger = {
        r["key"]: r
        for r in await conn.fetch(
            "SELECT key, day, source, fixes FROM fixes_archive WHERE day <= $1", _day(before)
        )
    }
    counts = {"fixes": hot, "archived_fixes": 0}
    if not ledger:
        return counts, []
    held = await asyncio.to_thread(_holding, archive, list(ledger), supervisee, before)
    counts["archived_fixes"] = sum(held.values())
    if dry_run:
        return counts, []
    for key, removed in held.items():
        entry = ledger[key]
        new = Archive.key(entry["day"], entry["source"])
        checksum, size = await asyncio.to_thread(
            _rewrite, archive, key, new, supervisee, before, entry["fixes"] - removed
        )
        await conn.execute(
            "UPDATE fixes_archive SET key = $2, fixes = $3, checksum = $4, bytes = $5"
            " WHERE key = $1",
            key,
            new,
            entry["fixes"] - removed,
            checksum,
            size,
        )
    return counts, list(held)


async def _purge_packed(conn: Conn, supervisee: str, before: datetime, dry_run: bool) -> int:
    """Take the person's fixes older than `before` out of the packed device-hours holding
    some (found through the devices they wore); how many."""
    theirs = "coalesce(supervisee_id = $1, false) AND ts < $2"
    hours = f"device_id = ANY({DEVICES_OF}) AND hour < $2"
    if dry_run:
        where = f"{hours} AND {theirs}"
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM fixes_packed WHERE {where}", supervisee, before
            )
        )
    # The device-hours holding some, deleted; the rest of their fixes packed again.
    count: int = await conn.fetchval(
        "WITH hit AS (DELETE FROM fixes_hours WHERE"
        f" {hours} AND $1 = ANY(supervisee_id) RETURNING *),"
        " held AS (SELECT hit.device_id, hit.hour, f.* FROM hit CROSS JOIN LATERAL"
        f" unnest({', '.join('hit.' + c for c in ARRAYS)}) AS f ({FIELDS})),"
        f" kept AS (SELECT * FROM held WHERE NOT ({theirs})),"
        f" again AS ({regroup('kept', 'hour')})"
        " SELECT (SELECT count(*) FROM held) - (SELECT count(*) FROM kept)",
        supervisee,
        before,
    )
    return count


async def discard(archive: Archive, keys: Sequence[str]) -> None:
    """Delete files a committed purge took out of the archive."""
    for key in keys:
        await asyncio.to_thread(archive.delete, key)


def _holding(
    archive: Archive, keys: list[str], supervisee: str, before: datetime
) -> dict[str, int]:
    """Of the files `keys`, those holding the person's fixes older than `before`, and how
    many each holds."""
    where = "supervisee_id = $supervisee AND ts < $before"
    return archive.count_by_file(keys, where, {"supervisee": supervisee, "before": before})


def _rewrite(
    archive: Archive, key: str, new: str, supervisee: str, before: datetime, left: int
) -> tuple[int, int]:
    """Write `key` again as `new` without the person's fixes before `before`, check it, and
    return its checksum and size."""
    before_ms = int(before.timestamp() * 1000)
    archive.rewrite_without(key, new, supervisee, before_ms)
    keep = "NOT (coalesce(supervisee_id = $supervisee, false) AND ts < $before)"
    expected = archive.stats([key], keep, {"supervisee": supervisee, "before": before})
    found = archive.stats([new])
    if found != expected or sum(n for n, _ in found.values()) != left:
        archive.delete(new)
        raise RuntimeError(f"{new} does not hold {key} less the purged fixes; nothing was purged")
    return sum(s for _, s in found.values()), archive.size(new)


def _archived(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "ts": at_ms(r["ts"]), "lat": r["lat"] / E7, "lon": r["lon"] / E7}


async def hot_relation(
    conn: Conn, where: str = "true", lo: str = "'-infinity'", hi: str = "'infinity'"
) -> str:
    """storage.hours.union(where, lo, hi) and any partition detached for a move, as one
    relation."""
    moving = " ".join(
        f'UNION ALL SELECT device_id, {FIELDS} FROM "{p.name}" WHERE {where}'
        for p in await detached(conn)
    )
    return f"({union(where, lo, hi)} {moving}) hot"


async def _keys(conn: Conn, first: date, last: date) -> list[str]:
    rows = await conn.fetch(
        "SELECT key FROM fixes_archive WHERE day >= $1 AND day <= $2 ORDER BY day", first, last
    )
    return [r["key"] for r in rows]


@contextlib.asynccontextmanager
async def _snapshot(conn: Conn) -> AsyncIterator[None]:
    """The ledger and PostgreSQL's fixes as of one moment (within the caller's transaction,
    if it has one)."""
    if conn.is_in_transaction():
        yield
        return
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


def _day(t: datetime) -> date:
    return t.astimezone(UTC).date()
