"""The archive tier on the real PostgreSQL: days past the archive's age move to Parquet and
read back as the same fixes (through the track API too, across both tiers); a move killed
with SIGKILL at any point loses nothing and duplicates nothing once run again; late fixes
of an archived day follow it once each; a retention purge empties both tiers of a person.
Each with the archive on local disk and on an S3 server (tests/s3_server.py). A closed day
packed in PostgreSQL (storage.compaction) reads back as the same fixes and still takes
late ones."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow.fs as pafs
import pytest
from redis.asyncio import Redis

from alerts import routing
from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token
from duties.retention import purge
from fencewatch.config import Settings
from storage import archiving, compaction, partitions
from storage.archive import COLUMNS, E7, Archive, at_ms
from storage.db import open_pool
from storage.fixes import committed_fixes
from storage.history import hot_relation
from storage.repo import offices as offices_repo
from tests.live import eventually
from tests.s3_server import KEYS, s3_server

ROOT = Path(__file__).resolve().parent.parent
DAYS = [date(2030, 3, 4), date(2030, 3, 5)]
LATER = datetime(2030, 3, 14, 1, 0, tzinfo=UTC)  # both days are more than 7 days old
WEARERS = {"T1": "P1", "T2": "P2", "T3": None}  # T3: a device no one wears
FIELDS = ("device_id", "supervisee_id", "seq", "ts", "received_at", *COLUMNS[5:])


def _fixes(seed: int = 7) -> list[tuple[Any, ...]]:
    """Two days of fixes every 10 minutes from three devices, with what real ones have:
    some without a position, unknown accuracy, 7-decimal coordinates."""
    rnd = random.Random(seed)
    rows = []
    for device, person in WEARERS.items():
        t = datetime.combine(DAYS[0], datetime.min.time(), UTC)
        for seq in range(1, 2 * 144 + 1):
            t += timedelta(minutes=10, milliseconds=rnd.randrange(-900, 900))
            if t.date() > DAYS[-1]:
                break
            positioned = rnd.random() > 0.05
            rows.append(
                (
                    device,
                    person,
                    seq,
                    t,
                    t + timedelta(milliseconds=rnd.randrange(200, 90_000)),
                    round(28.45 + rnd.uniform(-0.05, 0.05), 7) if positioned else None,
                    round(119.9 + rnd.uniform(-0.05, 0.05), 7) if positioned else None,
                    rnd.choice([None, 5.0, 8.5, 31.25]),
                    rnd.choice(["gps", "wifi", "lbs", None]),
                    rnd.choice([None, 0.0, 1.375]),
                    rnd.choice([None, 90.5, 271.0]),
                    rnd.choice([None, 80, 79]),
                    rnd.choice([None, True, False]),
                    rnd.choice([None, "ok", "open"]),
                    rnd.choice([0, 4, 20]),
                    rnd.choice([None, "in", "out", "uncertain"]),
                )
            )
    return rows


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await partitions.ensure(conn, DAYS[-1], ahead=0)
        await offices_repo.upsert_office(conn, "S1", "紫金司法所", "station", None)
        for person, status in (("P1", "released"), ("P2", "active")):
            await conn.execute(
                "INSERT INTO supervisees (id, office_id, term_end, status)"
                " VALUES ($1, 'S1', '2030-03-01', $2)",
                person,
                status,
            )
        for device, person in WEARERS.items():
            await conn.execute("INSERT INTO devices (id) VALUES ($1)", device)
            if person is not None:
                await conn.execute(
                    "INSERT INTO device_assignments (device_id, supervisee_id) VALUES ($1, $2)",
                    device,
                    person,
                )
        await conn.copy_records_to_table("fixes", records=_fixes(), columns=FIELDS)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 server with the bucket `fencewatch`, for this module's tests."""
    with pytest.MonkeyPatch.context() as env, s3_server() as endpoint:
        for name, value in KEYS.items():
            env.setenv(name, value)
        host = endpoint.removeprefix("http://")
        pafs.S3FileSystem(
            endpoint_override=host, scheme="http", allow_bucket_creation=True
        ).create_dir("fencewatch")
        yield endpoint


@pytest.fixture(params=["disk", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Archive:
    """The archive on local disk, or under a prefix of its own in an S3 bucket."""
    if request.param == "disk":
        return Archive.of(Settings(data_dir=tmp_path))
    endpoint = request.getfixturevalue("s3_endpoint")
    url = f"s3://fencewatch/test-{uuid.uuid4().hex[:8]}/archive"
    return Archive.of(Settings(archive_url=url, archive_s3_endpoint=endpoint))


async def _everything(pool: asyncpg.Pool, archive: Archive) -> list[tuple[Any, ...]]:
    """Every stored fix, from whichever tier holds it, in one form."""
    async with pool.acquire() as conn:
        hot = await hot_relation(conn)  # `fixes`, and a partition detached for a move
        rows = [tuple(r) for r in await conn.fetch(f"SELECT {', '.join(FIELDS)} FROM {hot}")]
    keys = [r["key"] for r in await pool.fetch("SELECT key FROM fixes_archive")]
    if keys:
        names = ", ".join(f"epoch_ms({c})" if c in ("ts", "received_at") else c for c in FIELDS)
        for r in archive.sql(f"SELECT {names} FROM read_parquet($files)", keys).fetchall():
            row = list(r)
            row[3], row[4] = at_ms(row[3]), at_ms(row[4])
            row[5], row[6] = (None if v is None else v / E7 for v in row[5:7])
            rows.append(tuple(row))
    return sorted(rows, key=lambda r: (r[0], r[3], r[2]))


async def _files_stored(archive: Archive) -> list[str]:
    return archive.keys()


async def test_archived_days_read_back_as_the_same_fixes(
    pool: asyncpg.Pool, archive: Archive, redis_url: str
) -> None:
    before = await _everything(pool, archive)
    app, token = await _api(pool, redis_url, archive)
    url = "/api/v1/supervisees/P1/track?from=2030-03-04T06:00:00%2B08:00&to=2030-03-06T00:00:00Z"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        hot = await c.get(url, headers={"Authorization": f"Bearer {token}"})
        assert hot.status_code == 200, hot.text

        done = await archiving.run(pool, archive, LATER, 7)

        assert [(f["key"].rsplit(".", 2)[0], f["source"]) for f in done["files"]] == [
            ("fixes/day=2030-03-04/fixes_2030_03_04", "fixes_2030_03_04"),
            ("fixes/day=2030-03-05/fixes_2030_03_05", "fixes_2030_03_05"),
        ]
        assert done["fixes"] == len(before)
        assert await pool.fetchval("SELECT count(*) FROM fixes") == 0
        assert await pool.fetchval("SELECT to_regclass('fixes_2030_03_04')") is None
        assert await _everything(pool, archive) == before
        archived = await c.get(url, headers={"Authorization": f"Bearer {token}"})
    assert archived.status_code == 200
    assert archived.json() == hot.json()
    assert len(hot.json()["features"]) > 200
    audits = await pool.fetch(
        "SELECT detail FROM audit_log WHERE action = 'location.track' ORDER BY id"
    )
    assert [a["detail"]["fixes"] for a in audits] == [len(hot.json()["features"])] * 2
    # Nothing more to move: a second run finds nothing.
    again = await archiving.run(pool, archive, LATER, 7)
    assert (again["files"], again["swept"]) == ([], [])


async def test_a_track_spanning_both_tiers_reads_as_before_the_move(
    pool: asyncpg.Pool, archive: Archive, redis_url: str
) -> None:
    """The first day archived, the second still in PostgreSQL: one track across both."""
    app, token = await _api(pool, redis_url, archive)
    url = "/api/v1/supervisees/P2/track?from=2030-03-04T12:00:00Z&to=2030-03-05T12:00:00Z"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        before = await c.get(url, headers=headers)

        done = await archiving.run(pool, archive, datetime(2030, 3, 12, 1, tzinfo=UTC), 7)

        assert [f["day"] for f in done["files"]] == [DAYS[0]]
        assert await pool.fetchval("SELECT count(*) FROM fixes WHERE supervisee_id = 'P2'") > 0
        across = await c.get(url, headers=headers)
    assert across.status_code == 200, across.text
    assert across.json() == before.json()
    times = [f["properties"]["ts"] for f in across.json()["features"]]
    assert times[0] < "2030-03-05" < times[-1] and times == sorted(times)


@pytest.mark.parametrize("point", ["detached", "written", "dropping"])
async def test_a_move_killed_midway_loses_and_duplicates_nothing_when_run_again(
    pool: asyncpg.Pool, archive: Archive, pg_dsn: str, point: str
) -> None:
    before = await _everything(pool, archive)
    killed = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.archive_crash", pg_dsn, archive.url, LATER.isoformat()),
        point,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **_s3_env(archive)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await killed.communicate()
    assert killed.returncode == -9, stderr.decode()
    # Meanwhile, every fix is still read once.
    assert await _everything(pool, archive) == before

    async def rerun() -> dict[str, Any] | None:
        # PostgreSQL ends the killed run's session (and its lock) once it sees it gone.
        done = await archiving.run(pool, archive, LATER, 7)
        return None if "skipped" in done else done

    done = await eventually(rerun, "the killed run's lock was never released")

    assert done["fixes"] == len(before)
    assert await _everything(pool, archive) == before
    ledger = sorted(r["key"] for r in await pool.fetch("SELECT key FROM fixes_archive"))
    assert await _files_stored(archive) == ledger
    assert await pool.fetchval("SELECT count(*) FROM fixes_archive_moves") == 0


def _s3_env(archive: Archive) -> dict[str, str]:
    """What the killed run needs to reach the archive's S3 server, if it is on one."""
    if not archive.remote:
        return {}
    return {"FENCEWATCH_ARCHIVE_S3_ENDPOINT": archive.endpoint or "", **KEYS}


async def test_late_fixes_of_an_archived_day_follow_it_once_each(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    await archiving.run(pool, archive, LATER, 7)
    before = await _everything(pool, archive)
    first = before[0]
    late = (*first[:2], 999, first[3] + timedelta(seconds=1), *first[4:])
    async with pool.acquire() as conn:
        # A fix the device buffered for nine days, and a redelivery of one already archived.
        await conn.copy_records_to_table("fixes", records=[late, first], columns=FIELDS)
    assert await pool.fetchval("SELECT count(*) FROM fixes_default") == 2

    done = await archiving.run(pool, archive, LATER + timedelta(days=1), 7)

    assert [(f["day"], f["source"][:5], f["fixes"]) for f in done["files"]] == [
        (DAYS[0], "late-", 1)
    ]
    assert await pool.fetchval("SELECT count(*) FROM fixes_default") == 0
    assert await _everything(pool, archive) == sorted(
        [*before, late], key=lambda r: (r[0], r[3], r[2])
    )


async def test_retention_purge_empties_both_tiers_of_a_person(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    await archiving.run(pool, archive, LATER, 7)
    before = await _everything(pool, archive)
    old_files = await _files_stored(archive)
    # A fix of theirs still in PostgreSQL too (a late one, in the default partition).
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO fixes (device_id, supervisee_id, seq, ts, received_at, lat, lon)"
            " VALUES ('T1', 'P1', 5000, '2030-03-09 08:00+00', '2030-03-09 08:00+00', 28.4, 119.9)"
        )

    now = datetime(2030, 3, 30, tzinfo=UTC)
    dry = await purge(pool, now, 10, archive=archive, dry_run=True)
    done = await purge(pool, now, 10, archive=archive)

    theirs = [r for r in before if r[1] == "P1"]
    assert dry["purged"]["P1"] == done["purged"]["P1"]
    assert done["purged"]["P1"]["archived_fixes"] == len(theirs)
    assert done["purged"]["P1"]["fixes"] == len(theirs) + 1
    after = await _everything(pool, archive)
    assert [r for r in after if r[1] == "P1"] == []
    assert after == [r for r in before if r[1] != "P1"]  # P2's and T3's, untouched
    # The files that held them are gone from storage, not only from the ledger.
    on_disk = await _files_stored(archive)
    assert not set(old_files) & set(on_disk)
    ledger = sorted(r["key"] for r in await pool.fetch("SELECT key FROM fixes_archive"))
    assert on_disk == ledger
    audit = await pool.fetchrow(
        "SELECT detail FROM audit_log WHERE action = 'retention.purge' AND object = 'supervisee:P1'"
    )
    assert audit["detail"]["archived_fixes"] == len(theirs)


async def _api(pool: asyncpg.Pool, redis_url: str, archive: Archive) -> tuple[Any, str]:
    async def health() -> dict[str, bool]:
        return {}

    async def changed(_: list[str] | None) -> None:
        return None

    settings = Settings(archive_url=archive.url)
    app = create_app(ApiContext(pool, Redis.from_url(redis_url), health, changed, settings))
    return app, await create_token(pool, "operator")


async def test_an_alert_without_a_position_is_placed_at_the_wearers_last_fix(
    pool: asyncpg.Pool,
) -> None:
    """Found through the devices the person wore (migration 0021), as an officer's SMS
    names the place."""
    at = datetime(2030, 3, 5, 12, 0, tzinfo=UTC)
    last = max(
        (r for r in _fixes() if r[1] == "P1" and r[5] is not None and r[3] <= at),
        key=lambda r: r[3],
    )
    alert = {"detail": {}, "supervisee_id": "P1", "ts": at, "type": "device_offline"}
    async with pool.acquire() as conn:
        place = await routing.place_of(conn, alert)
    assert (place.lat, place.lon, place.note) == (last[5], last[6], "最后位置")


async def test_fixes_a_shards_snapshot_has_not_passed_stay_in_postgresql(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    """A restore re-judges the fixes after its snapshot from PostgreSQL, by commit order:
    a day holding some waits until every shard's snapshot is past it."""
    before = await _everything(pool, archive)
    newest = await pool.fetchval("SELECT max(rid) FROM fixes")
    snapshot = "INSERT INTO engine_snapshots (last_rid, last_event_rid, state) VALUES ($1, 0, '')"
    await pool.execute(snapshot, newest - 10)

    held = await archiving.run(pool, archive, LATER, 7)

    # The last ten fixes stored (the day of 5 March) are not in the snapshot; 4 March is.
    assert [f["day"] for f in held["files"]] == [DAYS[0]]
    second = sum(1 for r in before if r[3].date() == DAYS[1])
    assert await pool.fetchval("SELECT count(*) FROM fixes") == second
    assert await pool.fetchval("SELECT to_regclass('fixes_2030_03_05')") is not None

    await pool.execute(snapshot, newest)
    moved = await archiving.run(pool, archive, LATER, 7)

    assert [f["day"] for f in moved["files"]] == [DAYS[1]] and moved["fixes"] == second
    assert await _everything(pool, archive) == before

    # A late fix of an archived day, newer than the snapshots: it waits, and the run
    # carries on with what it can move.
    late = (*before[0][:2], 999, before[0][3] + timedelta(seconds=1), *before[0][4:])
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("fixes", records=[late], columns=FIELDS)
    waiting = await archiving.run(pool, archive, LATER, 7)
    assert waiting["files"] == [] and await pool.fetchval("SELECT count(*) FROM fixes") == 1

    await pool.execute(snapshot, await pool.fetchval("SELECT max(rid) FROM fixes"))
    assert (await archiving.run(pool, archive, LATER, 7))["fixes"] == 1


async def test_an_earlier_versions_monthly_partition_moves_whole_once_its_month_is_old(
    pg_dsn: str, archive: Archive
) -> None:
    pool = await open_pool(pg_dsn, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE fixes_2030_03 PARTITION OF fixes"
                " FOR VALUES FROM ('2030-03-01 00:00+00') TO ('2030-04-01 00:00+00')"
            )
            await conn.copy_records_to_table("fixes", records=_fixes(), columns=FIELDS)
        before = await _everything(pool, archive)

        assert (await archiving.run(pool, archive, LATER, 7))["files"] == []  # March not over
        done = await archiving.run(pool, archive, datetime(2030, 4, 8, 1, tzinfo=UTC), 7)

        assert [(f["day"], f["source"]) for f in done["files"]] == [
            (DAYS[0], "fixes_2030_03"),
            (DAYS[1], "fixes_2030_03"),
        ]
        assert await pool.fetchval("SELECT to_regclass('fixes_2030_03')") is None
        assert await _everything(pool, archive) == before
    finally:
        await pool.close()


PACKED = datetime(2030, 3, 6, 1, 30, tzinfo=UTC)  # both days ended more than an hour ago


async def _index_bytes(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval("SELECT pg_indexes_size($1::regclass)", table))


async def test_a_closed_day_packed_reads_back_as_the_same_fixes_and_track(
    pool: asyncpg.Pool, archive: Archive, redis_url: str
) -> None:
    before = await _everything(pool, archive)
    app, token = await _api(pool, redis_url, archive)
    url = "/api/v1/supervisees/P1/track?from=2030-03-04T06:00:00%2B08:00&to=2030-03-06T00:00:00Z"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        track = await c.get(url, headers={"Authorization": f"Bearer {token}"})
        assert track.status_code == 200, track.text
        # 5 March is still today: only 4 March is closed.
        today = await compaction.run(pool, datetime(2030, 3, 5, 12, tzinfo=UTC))
        first_day = sum(1 for r in before if r[3].date() == DAYS[0])
        assert today == {"partitions": ["fixes_2030_03_04"], "fixes": first_day}
        unpacked = await _index_bytes(pool, "fixes_2030_03_05")

        done = await compaction.run(pool, PACKED)

        assert done["partitions"] == ["fixes_2030_03_05"]
        assert await _everything(pool, archive) == before
        again = await c.get(url, headers={"Authorization": f"Bearer {token}"})
    assert again.json() == track.json()
    # Packed: its primary key built by sorting, every page full (a tiny day shows little).
    assert await _index_bytes(pool, "fixes_2030_03_05") <= unpacked
    assert (await compaction.run(pool, PACKED))["partitions"] == []
    # Still the partitions of `fixes`, with their indexes: moved like any other day.
    moved = await archiving.run(pool, archive, LATER, 7)
    assert moved["fixes"] == len(before)
    assert await _everything(pool, archive) == before


async def test_a_late_fix_into_a_packed_day_is_stored_once_and_read(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    await compaction.run(pool, PACKED)
    before = await _everything(pool, archive)
    first = before[0]
    late = (*first[:2], 999, first[3] + timedelta(seconds=1), *first[4:])
    async with pool.acquire() as conn:
        newest = await conn.fetchval("SELECT max(rid) FROM fixes")
        await conn.copy_records_to_table("fixes", records=[late], columns=FIELDS)
        with pytest.raises(asyncpg.UniqueViolationError):  # a redelivery: ingest's COPY
            await conn.copy_records_to_table("fixes", records=[first], columns=FIELDS)
        # A restore re-judging after its snapshot finds the late fix by commit order.
        found, _ = await committed_fixes(conn, newest, 10)
    assert [(f.device, f.seq) for f in found] == [(late[0], 999)]
    assert await pool.fetchval("SELECT count(*) FROM fixes_default") == 0
    assert await _everything(pool, archive) == sorted(
        [*before, late], key=lambda r: (r[0], r[3], r[2])
    )


async def test_fixes_arriving_while_a_day_is_packed_are_kept(
    pool: asyncpg.Pool, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late fix committed after the copy began, before the swap: the swap adds it."""
    before = await _everything(pool, archive)
    first = before[0]
    late = (*first[:2], 999, first[3] + timedelta(seconds=1), *first[4:])
    swap, arrived = compaction._swap, []

    async def late_then_swap(conn: Any, *args: Any) -> int:
        if not arrived:
            async with pool.acquire() as other:
                arrived.append(
                    await other.copy_records_to_table("fixes", records=[late], columns=FIELDS)
                )
        return await swap(conn, *args)

    monkeypatch.setattr(compaction, "_swap", late_then_swap)
    done = await compaction.run(pool, PACKED)

    assert done["fixes"] == len(before) + 1
    assert await _everything(pool, archive) == sorted(
        [*before, late], key=lambda r: (r[0], r[3], r[2])
    )


async def test_a_day_is_not_packed_under_an_open_transaction_and_a_stopped_copy_is_dropped(
    pool: asyncpg.Pool, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest mid-commit of a late fix: the day waits for the next run, the fix is kept."""
    monkeypatch.setattr(compaction, "WAIT_S", 0.5)
    before = await _everything(pool, archive)
    first = before[0]
    late = (*first[:2], 999, first[3] + timedelta(seconds=1), *first[4:])
    async with pool.acquire() as conn:
        # What a copy stopped before its swap leaves behind.
        await conn.execute("CREATE TABLE fixes_2030_03_04_packed (LIKE fixes)")
    async with pool.acquire() as ingest:
        async with ingest.transaction():
            await ingest.copy_records_to_table("fixes", records=[late], columns=FIELDS)
            waited = await compaction.run(pool, PACKED)
        assert waited == {"partitions": [], "fixes": 0}
        assert await pool.fetchval("SELECT to_regclass('fixes_2030_03_04_packed')") is None

    done = await compaction.run(pool, PACKED)

    assert done["partitions"] == ["fixes_2030_03_04", "fixes_2030_03_05"]
    assert await _everything(pool, archive) == sorted(
        [*before, late], key=lambda r: (r[0], r[3], r[2])
    )


async def test_packing_waits_while_a_move_or_purge_holds_the_archive(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    async with pool.acquire() as purging:
        await purging.execute("SELECT pg_advisory_lock($1)", archiving.LOCK_ID)
        held = await compaction.run(pool, PACKED)
        await purging.execute("SELECT pg_advisory_unlock($1)", archiving.LOCK_ID)
    assert (held["partitions"], "skipped" in held) == ([], True)
    assert (await compaction.run(pool, PACKED))["partitions"] == [
        "fixes_2030_03_04",
        "fixes_2030_03_05",
    ]
