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
   — is exported, written as Parquet, and read back: fixes and a checksum per device-day
   must equal PostgreSQL's, or the move stops there;
3. the files' ledger rows, the delete of the day's device-hours and the drop of the table
   commit together.
A day of 100,000 tags is 288 M fixes: step 2 goes in pieces of about PIECE fixes, whole
(person, device)s in the file's order (person, device, time), each exported sorted and
counted and checksummed by PostgreSQL, and appended to the day's one file (row groups
follow on across pieces, as if written at once); the file is then read back a run of row
groups at a time. After each piece and run the move rests REST times as long as it took,
longer while ingest runs behind (storage.pacing): no query sorts or holds more than a
piece, no temporary file is written, and ingest keeps its share of a small box.
A move stopped anywhere (kill -9, a lost database) leaves either the partition attached, or
detached and recorded — the next run carries on from there — and at most files no ledger
row names, which the next run deletes. Fixes in the default partition older than the cutoff
(late arrivals) move the same way inside one repeatable-read transaction, which deletes
exactly the fixes it exported; one already archived (a redelivery) is not archived twice.

One process moves at a time (an advisory lock, also taken by the retention purge when it
rewrites archive files)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from storage.archive import COLUMNS, Archive, ArchiveError, Stats, file_checksum_sql
from storage.db import Conn
from storage.pacing import LagReader, Pace

log = logging.getLogger("fencewatch.archive")

LOCK_ID = 0x6677_6172  # "fwar"
PIECE = 100_000  # fixes a piece of a day's move: ~1 s of export and Parquet
REST = 1.0  # seconds of rest after a piece, per second it took

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
# A fix's place in _ORDER as far as (person, device): where a piece of a move starts and ends.
_KEY = '(supervisee_id IS NULL, coalesce(supervisee_id, \'\') COLLATE "C", device_id COLLATE "C")'
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
    return datetime.combine(d, datetime.min.time(), UTC)


Key = tuple[bool, str, str]  # _KEY's value: (no person, person or '', device)


@dataclass(frozen=True)
class Piece:
    """The fixes of a day whose _KEY is after `after` (None: from the first) up to `upto`,
    `fixes` of them, all of `devices`."""

    after: Key | None
    upto: Key
    devices: list[str]
    fixes: int


async def run(
    pool: asyncpg.Pool,
    archive: Archive,
    now: datetime,
    after_days: int,
    piece: int = PIECE,
    rest: float = REST,
    lag: LagReader | None = None,
) -> dict[str, Any]:
    """Move every day that ended more than `after_days` before `now`, in pieces of about
    `piece` fixes, resting after each (storage.pacing: `rest` times its time, more while
    `lag` says ingest is behind); returns what moved: {"files": [...], "fixes": n,
    "bytes": n, "pieces": n, "rested_s": n, "gave_way": pieces after which ingest was
    behind, "swept": stray files deleted}, and "skipped" when another run holds the lock."""
    cutoff = _start((now.astimezone(UTC) - timedelta(days=after_days)).date())
    result: dict[str, Any] = {
        "cutoff": cutoff.isoformat(),
        "files": [],
        "fixes": 0,
        "bytes": 0,
        "pieces": 0,
    }
    pace = Pace(rest, lag)
    move = _Move(archive, max(piece, 1), pace)
    async with pool.acquire() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            result["skipped"] = "another archive run is in progress"
            return result
        try:
            result["swept"] = await sweep(lock_conn, archive)
            async with pool.acquire() as conn:
                # A piece's sorts in memory (~200 bytes a fix as PostgreSQL sorts them), not
                # on disk; the pool resets it when the connection goes back.
                await conn.execute(f"SET work_mem = '{max(piece, 1) * 400 // 1024 + 4096}kB'")
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
                    _add(result, await _move_partition(conn, move, part))
                for day in await _late_days(conn, cutoff):
                    _add(result, await _move_late(conn, move, day))
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
            result["pieces"] = move.pieces
            result["rested_s"], result["gave_way"] = round(pace.rested_s, 1), pace.gave_way
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


async def _move_partition(conn: Conn, move: _Move, part: Partition) -> list[dict[str, Any]]:
    """Write and check the files of a detached partition's days, then take it out of
    PostgreSQL as they join the ledger, in one transaction: nothing changes in it
    meanwhile (late fixes go to the default partition, and a purge or packing waits for
    LOCK_ID), so no snapshot need span the pieces."""
    floor = await snapshot_floor(conn)
    files = []
    for day in part.days():
        written = await move.export(conn, part.name, True, day, part.name, floor)
        if written is not None:
            files.append(written)
    async with conn.transaction():
        await _record(conn, files)
        await conn.execute(
            "DELETE FROM fixes_hours WHERE hour >= $1 AND hour < $2", part.lo, part.hi
        )
        await conn.execute(f'DROP TABLE "{part.name}"')
        await conn.execute("DELETE FROM fixes_archive_moves WHERE source = $1", part.name)
    log.info("archive: moved %s (%d fixes)", part.name, sum(f["fixes"] for f in files))
    return files


async def _move_late(conn: Conn, move: _Move, day: date) -> list[dict[str, Any]]:
    """The default partition's fixes of `day`, seen in one snapshot: those exported are
    exactly those deleted; any that arrive meanwhile wait for the next run."""
    floor = await snapshot_floor(conn)
    async with conn.transaction(isolation="repeatable_read"):
        await _forget_archived(conn, move.archive, day)
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
        written = await move.export(conn, "fixes_default", False, day, f"late-{tail}", floor)
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


def _rows(table: str, packed: bool, where: str) -> str:
    """The fixes of `table` in [$1, $2) — with `packed`, and of the device-hours packed from
    it — that match `where` (on device_id and supervisee_id), as one relation."""
    columns = ", ".join(c for c in COLUMNS if c != "device_id")
    rows = f'SELECT rid, device_id, {columns} FROM "{table}" WHERE ts >= $1 AND ts < $2 AND {where}'
    if packed:
        rows += (
            f" UNION ALL SELECT NULL::bigint, device_id, {columns} FROM fixes_packed"
            f" WHERE hour >= $1 AND hour < $2 AND ts >= $1 AND ts < $2 AND {where}"
        )
    return f"({rows}) day"


def _groups_sql(table: str, packed: bool, where: str) -> str:
    """(supervisee_id, device_id, fixes) of `table` in [$1, $2) (with `packed`, and of the
    device-hours packed from it) of the devices `where` selects: of the packed fixes, only
    their persons' arrays are read."""
    rows = f'SELECT supervisee_id, device_id, count(*) AS n FROM "{table}"'
    rows += f" WHERE ts >= $1 AND ts < $2 AND {where} GROUP BY 1, 2"
    if packed:
        rows += (
            " UNION ALL SELECT s, device_id, count(*) FROM fixes_hours, unnest(supervisee_id) s"
            f" WHERE hour >= $1 AND hour < $2 AND {where} GROUP BY 1, 2"
        )
    return f"SELECT supervisee_id, device_id, sum(n)::bigint AS n FROM ({rows}) g GROUP BY 1, 2"


def _device_ranges(bounds: list[str]) -> list[tuple[str, list[str]]]:
    """Conditions on device_id ($3, $4) covering every device id once between `bounds`."""
    if not bounds:
        return [("true", [])]
    ranges = [("device_id < $3", [bounds[0]])]
    ranges += [
        ("device_id >= $3 AND device_id < $4", [a, b]) for a, b in itertools.pairwise(bounds)
    ]
    return [*ranges, ("device_id >= $3", [bounds[-1]])]


def _cut(groups: list[tuple[Key, int]], piece: int) -> list[Piece]:
    """`groups` ((person, device) and its fixes), in _KEY order, cut into pieces of whole
    groups of at least `piece` fixes (the last, what is left)."""
    pieces: list[Piece] = []
    devices: set[str] = set()
    fixes = 0
    for i, (key, n) in enumerate(groups):
        devices.add(key[2])
        fixes += n
        if fixes >= piece or i == len(groups) - 1:
            pieces.append(Piece(pieces[-1].upto if pieces else None, key, sorted(devices), fixes))
            devices, fixes = set(), 0
    return pieces


def _within(piece: Piece, first: int) -> tuple[str, list[Any]]:
    """A condition selecting `piece`'s fixes, its parameters numbered from `first`: its
    devices, through their key (device_id, …), and its bounds on _KEY, which leave out a
    device's fixes of another person in another piece."""
    where = [f"device_id = ANY(${first}::text[])"]
    args: list[Any] = [piece.devices]
    for op, key in ((">", piece.after), ("<=", piece.upto)):
        if key is not None:
            n = first + len(args)
            where.append(f"{_KEY} {op} (${n}::bool, ${n + 1}::text, ${n + 2}::text)")
            args += key
    return " AND ".join(where), args


class _Move:
    """A run's moves of days: the archive, the size of a piece, the pace."""

    def __init__(self, archive: Archive, piece: int, pace: Pace) -> None:
        self.archive = archive
        self.piece = piece
        self.pace = pace
        self.pieces = 0

    async def export(
        self, conn: Conn, table: str, packed: bool, day: date, source: str, floor: int | None
    ) -> dict[str, Any] | None:
        """Write the fixes of `day` of `table` (with `packed`, and of its packed hours) as
        the file of (`day`, `source`), a piece at a time, and check it against
        PostgreSQL's; None when there are none."""
        lo, hi = _start(day), _start(day + timedelta(days=1))
        groups = await self._groups(conn, table, packed, lo, hi)
        if not groups:
            return None
        out = await asyncio.to_thread(self.archive.create, Archive.key(day, source))
        expected: Stats = {}
        try:
            for piece in _cut(groups, self.piece):
                t0 = time.perf_counter()
                where, args = _within(piece, 3)
                found = await self._piece(conn, _rows(table, packed, where), day, floor, args)
                if sum(n for n, _ in found.values()) != piece.fixes:
                    raise ArchiveError(
                        f"{table} {day}: a piece up to {piece.upto} holds"
                        f" {sum(n for n, _ in found.values())} fixes, not {piece.fixes}"
                    )
                await asyncio.to_thread(
                    out.append_csv, await self._csv(conn, _rows(table, packed, where), lo, hi, args)
                )
                _add_stats(expected, found)
                self.pieces += 1
                await self.pace.after(time.perf_counter() - t0)
            written = await asyncio.to_thread(out.close)
        except BaseException:
            await asyncio.to_thread(out.discard)
            raise
        found = await self._read_back(written.key)
        if found != expected:
            wrong = sorted(
                k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k)
            )
            raise ArchiveError(
                f"{written.key} does not read back as {table} holds it: {len(wrong)}"
                f" device-days differ, e.g. {wrong[0]} (PostgreSQL {expected.get(wrong[0])},"
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

    async def _groups(
        self, conn: Conn, table: str, packed: bool, lo: datetime, hi: datetime
    ) -> list[tuple[Key, int]]:
        """The (person, device)s of [lo, hi) in _KEY order, and their fixes: counted a
        range of the registered devices at a time (a hundredth of a piece: a device-day is
        up to 2,880 fixes, and only their persons are read), resting between ranges; the
        ranges cover any device id, registered or not."""
        bounds = await conn.fetch(
            "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS i FROM devices) d"
            " WHERE i % $1 = 0 ORDER BY id",
            max(self.piece // 100, 1),
        )
        groups = []
        for where, args in _device_ranges([r["id"] for r in bounds]):
            t0 = time.perf_counter()
            rows = await conn.fetch(_groups_sql(table, packed, where), lo, hi, *args)
            groups += [
                ((r["supervisee_id"] is None, r["supervisee_id"] or "", r["device_id"]), r["n"])
                for r in rows
            ]
            await self.pace.after(time.perf_counter() - t0)
        return sorted(groups)

    async def _piece(
        self, conn: Conn, rows: str, day: date, floor: int | None, args: list[Any]
    ) -> Stats:
        """PostgreSQL's stats of a piece's `rows`, which must all be in every shard's
        snapshot."""
        expected, tail = await _pg_stats(
            conn, rows, _start(day), _start(day + timedelta(days=1)), *args
        )
        if floor is not None and tail > floor:
            raise ArchiveError(
                f"{day}: fixes up to rid {tail} are not yet in every shard's snapshot"
                f" (oldest at {floor}); moving them would keep them from a restore"
            )
        return expected

    @staticmethod
    async def _csv(conn: Conn, rows: str, lo: datetime, hi: datetime, args: list[Any]) -> bytes:
        """The fixes of `rows` sorted, as the CSV storage.archive takes: a piece, in memory."""
        chunks: list[bytes] = []

        async def take(chunk: bytes) -> None:
            chunks.append(chunk)

        select = ", ".join(_EXPORT[c] for c in COLUMNS)
        await conn.copy_from_query(
            f"SELECT {select} FROM {rows} ORDER BY {_ORDER}",
            lo,
            hi,
            *args,
            output=take,
            format="csv",
        )
        return b"".join(chunks)

    async def _read_back(self, key: str) -> Stats:
        """The file `key` as written, read back a run of about a piece at a time."""
        reading = await asyncio.to_thread(self.archive.read_back, key, self.piece)
        found: Stats = {}
        try:
            for i, run in enumerate(reading.runs):
                t0 = time.perf_counter()
                _add_stats(found, await asyncio.to_thread(reading.stats, run))
                if i < len(reading.runs) - 1:
                    await self.pace.after(time.perf_counter() - t0)
        finally:
            await asyncio.to_thread(reading.close)
        return found


def _add_stats(into: Stats, more: Stats) -> None:
    """A device-day's fixes and checksums over two pieces add up (a device worn by two
    people that day is in two)."""
    for k, (n, s) in more.items():
        had_n, had_s = into.get(k, (0, 0))
        into[k] = (had_n + n, had_s + s)


async def _pg_stats(
    conn: Conn, rows: str, lo: datetime, hi: datetime, *args: Any
) -> tuple[Stats, int]:
    """(fixes, checksum) per device-day of the relation `rows` of [lo, hi) ($1, $2; `args`
    from $3), and its highest rid."""
    found = await conn.fetch(
        "SELECT device_id, floor(extract(epoch FROM ts) / 86400)::int AS day, count(*) AS n,"
        f" sum(('x' || {file_checksum_sql(_TEXT)})::bit(48)::bigint) AS sum,"
        f" coalesce(max(rid), 0) AS tail FROM {rows} GROUP BY 1, 2",
        lo,
        hi,
        *args,
    )
    stats = {(r["device_id"], r["day"]): (int(r["n"]), int(r["sum"])) for r in found}
    return stats, max((r["tail"] for r in found), default=0)


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
