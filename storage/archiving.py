"""Moving fixes from PostgreSQL to the archive (storage.archive), verified, and safe to stop
at any point: `fencewatch archive run` and the service's upkeep.

A daily partition of `fixes` whose day ended more than `Settings.archive_after_days` ago
moves in three steps:
1. unless it holds fixes a shard's newest snapshot has not passed (a restore re-judges
   those, by commit order, from `fixes`), it is detached from `fixes` and recorded in
   `fixes_archive_moves` (one short transaction): no fix can land in it any more — a
   late one goes to the default partition — and readers (storage.history) read it beside
   `fixes`;
2. each of its days — its rows and the device-hours packed from it (storage.compaction)
   — is exported sorted, written as Parquet, and read back: fixes and a checksum per
   device-day must equal PostgreSQL's, or the move stops there;
3. the files' ledger rows, the delete of the day's device-hours and the drop of the table
   commit together.
A move stopped anywhere (kill -9, a lost database) leaves either the partition attached, or
detached and recorded — the next run carries on from there — and at most files no ledger
row names, which the next run deletes. Fixes in the default partition older than the cutoff
(late arrivals) move the same way inside one repeatable-read transaction, which deletes
exactly the fixes it exported; one already archived (a redelivery) is not archived twice.

One process moves at a time (an advisory lock, also taken by the retention purge when it
rewrites archive files)."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from storage.archive import COLUMNS, Archive, ArchiveError, Stats, file_checksum_sql
from storage.db import Conn

log = logging.getLogger("fencewatch.archive")

LOCK_ID = 0x6677_6172  # "fwar"

# The archived columns as PostgreSQL exports them (CSV, in storage.archive.COLUMNS order).
_EXPORT = {
    **{c: c for c in COLUMNS},
    "ts": "(extract(epoch FROM ts) * 1000)::bigint",
    "received_at": "(extract(epoch FROM received_at) * 1000)::bigint",
    "lat": "round(lat * 1e7)::int4",
    "lon": "round(lon * 1e7)::int4",
}
# …and as the canonical text of the checksum, as storage.archive has it in DuckDB's words.
_TEXT = {
    **{c: c for c in ("supervisee_id", "device_id", "src", "strap", "zone_state")},
    **{c: f"{c}::text" for c in ("seq", "batt", "quality", "chg")},
    **{c: f"{_EXPORT[c]}::text" for c in ("lat", "lon")},
    **{c: f"(extract(epoch FROM {c}) * 1000000)::bigint::text" for c in ("ts", "received_at")},
    **{c: f"floor({c}::float8 * 1000)::bigint::text" for c in ("acc", "spd", "hdg")},
}
_ORDER = 'supervisee_id COLLATE "C" NULLS LAST, device_id COLLATE "C", ts, seq'
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lo: datetime
    hi: datetime

    def days(self) -> list[date]:
        first, last = self.lo.astimezone(UTC).date(), (self.hi - _TICK).astimezone(UTC).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


_TICK = timedelta(microseconds=1)


def _start(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


async def run(
    pool: asyncpg.Pool, archive: Archive, now: datetime, after_days: int
) -> dict[str, Any]:
    """Move every day that ended more than `after_days` before `now`; returns what moved."""
    cutoff = _start((now.astimezone(UTC) - timedelta(days=after_days)).date())
    result: dict[str, Any] = {"cutoff": cutoff.isoformat(), "files": [], "fixes": 0, "bytes": 0}
    async with pool.acquire() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            result["skipped"] = "another archive run is in progress"
            return result
        try:
            result["swept"] = await sweep(lock_conn, archive)
            async with pool.acquire() as conn:
                floor = await snapshot_floor(conn)
                for part in await ended(conn, cutoff):
                    if floor is not None and await _newer(conn, part.name, floor):
                        log.warning(
                            "archive: %s holds fixes a shard's snapshot has not passed"
                            " (rid > %d); it waits for the next run",
                            part.name,
                            floor,
                        )
                        continue
                    await _detach(conn, part)
                for part in await detached(conn):
                    _add(result, await _move_partition(conn, archive, part))
                for day in await _late_days(conn, cutoff):
                    _add(result, await _move_late(conn, archive, day))
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    return result


def _add(result: dict[str, Any], files: list[dict[str, Any]]) -> None:
    result["files"] += files
    result["fixes"] += sum(f["fixes"] for f in files)
    result["bytes"] += sum(f["bytes"] for f in files)


async def sweep(conn: Conn, archive: Archive) -> list[str]:
    """Delete the files no ledger row names: what a stopped move or purge left. Only under
    LOCK_ID, so that no file being written is taken for one."""
    known = {r["key"] for r in await conn.fetch("SELECT key FROM fixes_archive")}
    stray = [k for k in await asyncio.to_thread(archive.keys) if k not in known]
    for key in stray:
        await asyncio.to_thread(archive.delete, key)
    if stray:
        log.info("archive: deleted %d files of an unfinished move or purge", len(stray))
    return stray


async def detached(conn: Conn) -> list[Partition]:
    """Partitions detached for a move and not yet archived, oldest first."""
    rows = await conn.fetch("SELECT source, lo, hi FROM fixes_archive_moves ORDER BY lo")
    return [Partition(r["source"], r["lo"], r["hi"]) for r in rows]


async def ended(conn: Conn, cutoff: datetime) -> list[Partition]:
    """The partitions of `fixes` whose every fix is older than `cutoff`, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'fixes'::regclass"
    )
    found = []
    for r in rows:
        m = _BOUND.search(r["bound"])
        if m is None:  # the default partition
            continue
        lo, hi = (datetime.fromisoformat(v) for v in m.groups())
        if hi <= cutoff:
            found.append(Partition(r["relname"], lo, hi))
    return sorted(found, key=lambda p: p.lo)


async def _newer(conn: Conn, table: str, rid: int) -> bool:
    """Whether `table` holds a fix committed after `rid` (the BRIN index on rid answers)."""
    return bool(await conn.fetchval(f'SELECT EXISTS (SELECT FROM "{table}" WHERE rid > $1)', rid))


async def _detach(conn: Conn, part: Partition) -> None:
    async with conn.transaction():
        # Taking `fixes` exclusively, briefly: a wait longer than this gives up until the
        # next run rather than hold up ingest behind it.
        await conn.execute("SET LOCAL lock_timeout = '5s'")
        await conn.execute(f'ALTER TABLE fixes DETACH PARTITION "{part.name}"')
        await conn.execute(
            "INSERT INTO fixes_archive_moves (source, lo, hi) VALUES ($1, $2, $3)",
            part.name,
            part.lo,
            part.hi,
        )
    log.info("archive: detached %s to move it", part.name)


async def _move_partition(conn: Conn, archive: Archive, part: Partition) -> list[dict[str, Any]]:
    floor = await snapshot_floor(conn)
    files = []
    async with conn.transaction():
        for day in part.days():
            written = await _export(conn, archive, _with_packed(part.name), day, part.name, floor)
            if written is not None:
                files.append(written)
        await _record(conn, files)
        await conn.execute(
            "DELETE FROM fixes_hours WHERE hour >= $1 AND hour < $2", part.lo, part.hi
        )
        await conn.execute(f'DROP TABLE "{part.name}"')
        await conn.execute("DELETE FROM fixes_archive_moves WHERE source = $1", part.name)
    log.info("archive: moved %s (%d fixes)", part.name, sum(f["fixes"] for f in files))
    return files


async def _move_late(conn: Conn, archive: Archive, day: date) -> list[dict[str, Any]]:
    """The default partition's fixes of `day`, seen in one snapshot: those exported are
    exactly those deleted; any that arrive meanwhile wait for the next run."""
    floor = await snapshot_floor(conn)
    async with conn.transaction(isolation="repeatable_read"):
        await _forget_archived(conn, archive, day)
        tail = await conn.fetchval(
            "SELECT max(rid) FROM fixes_default WHERE ts >= $1 AND ts < $2",
            _start(day),
            _start(day + timedelta(days=1)),
        )
        if tail is None:
            return []
        if floor is not None and tail > floor:
            # Arrived since the last snapshots: the next run takes them.
            log.info("archive: late fixes of %s wait for every shard's snapshot", day)
            return []
        written = await _export(conn, archive, '"fixes_default"', day, f"late-{tail}", floor)
        files = [written] if written else []
        await _record(conn, files)
        await conn.execute(
            "DELETE FROM fixes_default WHERE ts >= $1 AND ts < $2",
            _start(day),
            _start(day + timedelta(days=1)),
        )
    return files


async def _forget_archived(conn: Conn, archive: Archive, day: date) -> None:
    """Delete from the default partition the fixes of `day` the archive already has (a
    redelivery that arrived after its day moved): one fix, one copy."""
    keys = await _day_keys(conn, day)
    if not keys:
        return
    late = await conn.fetch(
        "SELECT device_id, (extract(epoch FROM ts) * 1000)::bigint AS ts, seq FROM fixes_default"
        " WHERE ts >= $1 AND ts < $2",
        _start(day),
        _start(day + timedelta(days=1)),
    )
    if not late:
        return
    found = await asyncio.to_thread(
        archive.sql,
        "SELECT device_id, epoch_ms(ts) AS ts, seq FROM read_parquet($files)"
        " WHERE list_contains($devices, device_id)",
        keys,
        {"devices": sorted({r["device_id"] for r in late})},
    )
    have = {(d, int(t), int(s)) for d, t, s in found.fetchall()}
    again = [r for r in late if (r["device_id"], r["ts"], r["seq"]) in have]
    if again:
        await conn.executemany(
            "DELETE FROM fixes_default WHERE device_id = $1"
            " AND ts = to_timestamp($2::float8 / 1000) AND seq = $3",
            [(r["device_id"], r["ts"], r["seq"]) for r in again],
        )
        log.info("archive: %d late fixes of %s were archived already", len(again), day)


async def _day_keys(conn: Conn, day: date) -> list[str]:
    return [r["key"] for r in await conn.fetch("SELECT key FROM fixes_archive WHERE day = $1", day)]


def _with_packed(table: str) -> str:
    """`table` and the device-hours packed from it (those of its days, [$1, $2)), as one
    relation."""
    columns = ", ".join(c for c in COLUMNS if c != "device_id")
    return (
        f'(SELECT rid, device_id, {columns} FROM "{table}" UNION ALL SELECT NULL::bigint,'
        f" device_id, {columns} FROM fixes_packed WHERE hour >= $1 AND hour < $2) day"
    )


async def _export(
    conn: Conn, archive: Archive, table: str, day: date, source: str, floor: int | None
) -> dict[str, Any] | None:
    """Write the fixes of `day` of `table` (a relation) as the file of (`day`, `source`)
    and check it against PostgreSQL; None when there are none."""
    lo, hi = _start(day), _start(day + timedelta(days=1))
    expected, tail = await _pg_stats(conn, table, lo, hi)
    if not expected:
        return None
    if floor is not None and tail > floor:
        raise ArchiveError(
            f"{table} {day}: fixes up to rid {tail} are not yet in every shard's snapshot"
            f" (oldest at {floor}); moving them would keep them from a restore"
        )
    select = ", ".join(_EXPORT[c] for c in COLUMNS)
    with tempfile.TemporaryDirectory(prefix="fencewatch-archive-") as tmp:
        csv = Path(tmp) / "fixes.csv"
        await conn.copy_from_query(
            f"SELECT {select} FROM {table} WHERE ts >= $1 AND ts < $2 ORDER BY {_ORDER}",
            lo,
            hi,
            output=csv,
            format="csv",
        )
        written = await asyncio.to_thread(archive.write, Archive.key(day, source), csv)
    found = await asyncio.to_thread(archive.stats, [written.key])
    if found != expected:
        wrong = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise ArchiveError(
            f"{written.key} does not read back as {table} holds it: {len(wrong)} device-days"
            f" differ, e.g. {wrong[0]} (PostgreSQL {expected.get(wrong[0])},"
            f" file {found.get(wrong[0])}); nothing was moved"
        )
    return {
        "key": written.key,
        "day": day,
        "source": source,
        "fixes": written.fixes,
        "checksum": sum(s for _, s in expected.values()),
        "bytes": written.bytes,
    }


async def _pg_stats(conn: Conn, table: str, lo: datetime, hi: datetime) -> tuple[Stats, int]:
    """(fixes, checksum) per device-day of `table` in [lo, hi), and its highest rid."""
    rows = await conn.fetch(
        "SELECT device_id, floor(extract(epoch FROM ts) / 86400)::int AS day, count(*) AS n,"
        f" sum(('x' || {file_checksum_sql(_TEXT)})::bit(48)::bigint) AS sum,"
        f" coalesce(max(rid), 0) AS tail FROM {table} WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2",
        lo,
        hi,
    )
    stats = {(r["device_id"], r["day"]): (int(r["n"]), int(r["sum"])) for r in rows}
    return stats, max((r["tail"] for r in rows), default=0)


async def snapshot_floor(conn: Conn) -> int | None:
    """The lowest rid any shard's newest snapshot has judged up to: a restore judges again
    the fixes after it, by rid, from PostgreSQL. None when no shard has a snapshot."""
    floor: int | None = await conn.fetchval(
        "SELECT min(last_rid) FROM (SELECT DISTINCT ON (shard, shards) last_rid"
        " FROM engine_snapshots ORDER BY shard, shards, id DESC) newest"
    )
    return floor


async def _record(conn: Conn, files: list[dict[str, Any]]) -> None:
    await conn.executemany(
        "INSERT INTO fixes_archive (key, day, source, fixes, checksum, bytes)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(f["key"], f["day"], f["source"], f["fixes"], f["checksum"], f["bytes"]) for f in files],
    )


async def _late_days(conn: Conn, cutoff: datetime) -> list[date]:
    rows = await conn.fetch(
        "SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day FROM fixes_default"
        " WHERE ts < $1 ORDER BY 1",
        cutoff,
    )
    return [r["day"] for r in rows]
