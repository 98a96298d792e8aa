"""`python -m benchmarks.storage`: what a fix costs in each storage tier on this machine
(issue 19): bytes per fix in PostgreSQL and in the archive (indexes included), how fast
fixes are COPYed in and archived, and how long a person-day track takes from each tier.

On a fresh database of its own (dropped afterwards unless --keep): `--people` × `--days`
of realistic tag fixes every `--interval` seconds (benchmarks.history) are COPYed into the
daily partitions the way ingest COPYs them, people interleaved by time as ingest sees them,
an hour at a time; after each hour, the hours closed for an hour are packed
(storage.compaction, as the service's hourly upkeep does), so the hot tier is measured as
it stands in service: packed hours and the rows of the last two. Person-days are read from
the hot tier (storage.history.track, as the track API does); all days but the last
`--hot-days` are then archived (storage.archiving, as `fencewatch archive run` does) and
person-days read from the archive. Prints one JSON object; docs/benchmarks.md says what
each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from benchmarks import procs
from benchmarks.history import Fixes, device, person_days, supervisee
from storage import archiving, compaction, history, partitions
from storage.archive import Archive
from storage.db import open_pool
from storage.fixes import COLUMNS

PG_ADMIN = os.environ.get(
    "FENCEWATCH_BENCH_PG",
    os.environ.get("FENCEWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
FIRST_DAY = date(2026, 1, 5)
INTERLEAVE = 250  # people whose fixes are COPYed merged by time, as ingest commits them
HOUR_MS = 3_600_000


async def bench(opts: argparse.Namespace, archive_dir: Path) -> dict[str, Any]:
    name = f"fw_bench_storage_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await open_pool(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, min_size=1, max_size=2)
        try:
            return await _measure(pool, opts, Archive(str(archive_dir)))
        finally:
            await pool.close()
    finally:
        if opts.keep:
            print(f"kept database {name} and archive {archive_dir}", file=sys.stderr)
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _measure(
    pool: asyncpg.Pool, opts: argparse.Namespace, archive: Archive
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        for d in range(opts.days + 1):
            await partitions.ensure(conn, FIRST_DAY + timedelta(days=d), ahead=0)
        # The roster: each person wears their tag (the track is read through it).
        people = [(supervisee(p), device(p)) for p in range(opts.people)]
        await conn.executemany(
            "INSERT INTO supervisees (id) VALUES ($1)", [(s,) for s, _ in people]
        )
        await conn.executemany("INSERT INTO devices (id) VALUES ($1)", [(d,) for _, d in people])
        await conn.executemany(
            "INSERT INTO device_assignments (device_id, supervisee_id) VALUES ($2, $1)", people
        )
    started = time.perf_counter()
    generated, copy_s, pack_s = await _load(pool, opts)
    loaded = time.perf_counter() - started
    hot = await _hot(pool, generated)
    archived_days = opts.days - opts.hot_days
    # The days packed whole (all but the last, whose newest hours are still rows).
    hot["person_day"] = await _person_days(pool, archive, opts, range(max(1, opts.days - 1)))
    hot["packing_fixes_per_s"] = round(hot["packed"]["fixes"] / pack_s)
    now = datetime.combine(FIRST_DAY + timedelta(days=archived_days + 1), datetime.min.time(), UTC)
    t0 = time.perf_counter()
    moved = await archiving.run(pool, archive, now, 1, rest=0)  # at full speed, measured
    archive_s = time.perf_counter() - t0
    archive_q = await _person_days(pool, archive, opts, range(archived_days))
    return {
        "machine": procs.machine(),
        "params": {
            "people": opts.people,
            "days": opts.days,
            "interval_s": opts.interval,
            "hot_days": opts.hot_days,
            "queries": opts.queries,
            "seed": opts.seed,
            "generators": opts.generators,
            "converted": opts.converted,
        },
        "fixes": generated,
        "generate_and_load_s": round(loaded, 1),
        "copy_fixes_per_s": round(generated / copy_s),
        "hot": hot,
        "archive": {
            "fixes": moved["fixes"],
            "files": len(moved["files"]),
            "pieces": moved["pieces"],
            "bytes": moved["bytes"],
            "bytes_per_fix": round(moved["bytes"] / moved["fixes"], 2) if moved["fixes"] else None,
            "fixes_per_s": round(moved["fixes"] / archive_s),
            "seconds": round(archive_s, 1),
            "person_day": archive_q,
        },
    }


async def _load(pool: asyncpg.Pool, opts: argparse.Namespace) -> tuple[int, float, float]:
    """COPY every fix, generated meanwhile by `--generators` processes, each taking every
    so many groups of INTERLEAVE people, an hour at a time, packing after each hour what
    the service's upkeep would; (fixes, seconds spent in COPY, seconds spent packing)."""
    spawn = multiprocessing.get_context("spawn")
    days: multiprocessing.Queue[Fixes | None] = spawn.Queue(maxsize=2 * opts.generators)
    groups = list(range(0, opts.people, INTERLEAVE))
    generators = [
        spawn.Process(
            target=_generate,
            args=(
                groups[g :: opts.generators],
                opts.people,
                opts.days,
                opts.interval,
                opts.seed,
                days,
            ),
            daemon=True,
        )
        for g in range(min(opts.generators, len(groups)))
    ]
    for generator in generators:
        generator.start()
    total, copy_s, pack_s, running = 0, 0.0, 0.0, len(generators)
    noise = np.random.default_rng(opts.seed)
    try:
        while running:
            fixes = await asyncio.to_thread(_next, days, generators)
            if fixes is None:
                running -= 1
                continue
            if opts.converted:
                for column in (fixes.lat, fixes.lon):
                    column += noise.uniform(-5e-6, 5e-6, len(column))
            rows = fixes.rows()
            hours = fixes.ts // HOUR_MS
            for hour in np.unique(hours):
                lo, hi = np.searchsorted(hours, [hour, hour + 1])
                t0 = time.perf_counter()
                async with pool.acquire() as conn:
                    for i in range(lo, hi, opts.batch):
                        await conn.copy_records_to_table(
                            "fixes", records=rows[i : min(i + opts.batch, hi)], columns=COLUMNS
                        )
                t1 = time.perf_counter()
                end = datetime.fromtimestamp((int(hour) + 1) * HOUR_MS / 1000, UTC)
                await compaction.run(pool, end, rest=0)  # packing at full speed, measured
                copy_s, pack_s = copy_s + t1 - t0, pack_s + time.perf_counter() - t1
            total += len(rows)
    finally:
        for generator in generators:
            generator.kill()
            generator.join()
    return total, copy_s, pack_s


def _generate(
    groups: list[int],
    people: int,
    days: int,
    interval: float,
    seed: int,
    out: multiprocessing.Queue[Fixes | None],
) -> None:
    """A generating process: each day of each of its groups of INTERLEAVE people (from
    `groups`), merged by time, then None."""
    for group in groups:
        members = range(group, min(group + INTERLEAVE, people))
        streams = [person_days(p, FIRST_DAY, days, interval, seed) for p in members]
        for _ in range(days):
            out.put(Fixes.by_time([next(s) for s in streams]))
    out.put(None)


def _next(
    days: multiprocessing.Queue[Fixes | None],
    generators: Sequence[multiprocessing.process.BaseProcess],
) -> Fixes | None:
    while True:
        try:
            return days.get(timeout=5)
        except queue.Empty:
            dead = [g.exitcode for g in generators if not g.is_alive() and g.exitcode]
            if dead:
                raise RuntimeError(f"a generating process died ({dead[0]})") from None


async def _hot(pool: asyncpg.Pool, fixes: int) -> dict[str, Any]:
    """Bytes (heap with TOAST and maps, and indexes) per fix of the packed device-hours,
    of the rows not yet packed (the partitions of `fixes`, their free space included), and
    of the two together."""
    packed = await pool.fetchrow(
        "SELECT pg_table_size('fixes_hours') AS heap, pg_indexes_size('fixes_hours') AS indexes,"
        " (SELECT coalesce(sum(cardinality(ts)), 0) FROM fixes_hours) AS fixes"
    )
    rows = await pool.fetchrow(
        "SELECT sum(pg_table_size(inhrelid))::bigint AS heap,"
        " sum(pg_indexes_size(inhrelid))::bigint AS indexes, (SELECT count(*) FROM fixes) AS fixes"
        " FROM pg_inherits WHERE inhparent = 'fixes'::regclass"
    )
    assert packed is not None and rows is not None

    def part(r: asyncpg.Record) -> dict[str, Any]:
        size = r["heap"] + r["indexes"]
        n = r["fixes"]
        return {
            "fixes": n,
            "bytes": size,
            "heap": r["heap"],
            "indexes": r["indexes"],
            "bytes_per_fix": round(size / n, 1) if n else None,
            "heap_bytes_per_fix": round(r["heap"] / n, 1) if n else None,
            "index_bytes_per_fix": round(r["indexes"] / n, 1) if n else None,
        }

    whole = part(packed)["bytes"] + part(rows)["bytes"]
    return {
        "fixes": fixes,
        "bytes": whole,
        "bytes_per_fix": round(whole / fixes, 1),
        "packed": part(packed),
        "unpacked": part(rows),
    }


async def _person_days(
    pool: asyncpg.Pool, archive: Archive, opts: argparse.Namespace, days: range
) -> dict[str, Any]:
    """p50/p99 ms of a random person's track over a random whole (UTC) day of `days`."""
    rng = np.random.default_rng(opts.seed + len(days))
    took, sizes = [], []
    async with pool.acquire() as conn:
        for _ in range(opts.queries):
            person = supervisee(int(rng.integers(opts.people)))
            start = datetime.combine(
                FIRST_DAY + timedelta(days=int(rng.choice(days))), datetime.min.time(), UTC
            )
            t0 = time.perf_counter()
            rows = await history.track(
                conn, archive, person, start, start + timedelta(days=1), 50_001
            )
            took.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(rows))
    took.sort()
    return {
        "p50_ms": round(statistics.median(took), 1),
        "p99_ms": round(took[min(len(took) - 1, int(len(took) * 0.99))], 1),
        "max_ms": round(took[-1], 1),
        "fixes_per_query": round(statistics.mean(sizes)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--people", type=int, default=35, help="tags (one person each)")
    parser.add_argument("--days", type=int, default=10, help="days of history")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between fixes")
    parser.add_argument(
        "--hot-days", type=int, default=2, help="newest days left in PostgreSQL (the rest archived)"
    )
    # A p99 of 200 reads is their second slowest: a cold first read or two decided it.
    parser.add_argument("--queries", type=int, default=1000, help="person-days read per tier")
    parser.add_argument("--batch", type=int, default=2000, help="fixes per COPY (ingest's batch)")
    parser.add_argument(
        "--generators", type=int, default=2, help="processes generating fixes while COPY runs"
    )
    parser.add_argument(
        "--converted",
        action="store_true",
        help="coordinates as a GCJ-02 conversion leaves them (any double, not whole 1e-6°)",
    )
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--archive-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the database and the archive")
    opts = parser.parse_args(argv)
    if not 0 <= opts.hot_days < opts.days:
        parser.error("--hot-days must be at least 0 and less than --days")
    if opts.archive_dir is not None:
        result = asyncio.run(bench(opts, opts.archive_dir))
    elif opts.keep:
        result = asyncio.run(bench(opts, Path(tempfile.mkdtemp(prefix="fw-bench-archive-"))))
    else:
        with tempfile.TemporaryDirectory(prefix="fw-bench-archive-") as tmp:
            result = asyncio.run(bench(opts, Path(tmp)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
