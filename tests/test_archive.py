"""The archive tier on the real PostgreSQL: days past the archive's age move to Parquet and
read back as the same fixes (through the track API too, across both tiers); a move killed
with SIGKILL at any point loses nothing and duplicates nothing once run again; late fixes
of an archived day follow it once each; a retention purge empties both tiers of a person.
Each with the archive on local disk and on an S3 server (tests/s3_server.py). Closed hours
packed a device-hour a row (storage.compaction) read back as the same fixes, through the
track API too, and move to the archive alike; a late fix into a packed hour is stored once
and its redelivery refused, yet stays a row for a restore until snapshots have judged it;
a purge splits the hour spanning its cutoff; a packing killed midway loses and duplicates
nothing."""

from __future__ import annotations

import asyncio
import functools
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
import pyarrow.parquet as pq
import pytest
from redis.asyncio import Redis

from alerts import routing
from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token
from duties.retention import purge
from fencewatch.config import Settings
from fencewatch.embedded import free_port
from fencewatch.timefmt import epoch_ms
from geofence.judge import Judged
from geofence.model import Fix
from geofence.policy import Policy
from ingest.leases import Leases, ingest_lag
from ingest.writer import commit
from storage import archiving, compaction, history, partitions
from storage.archive import COLUMNS, E7, Archive, ArchiveError, DayFile, at_ms
from storage.db import open_pool
from storage.fixes import committed_fixes
from storage.history import hot_relation
from storage.repo import offices as offices_repo
from storage.repo import tracks
from supervision import checkins
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


async def _killed_at(point: str, pg_dsn: str, archive: Archive, until: datetime) -> None:
    """tests.archive_crash run up to `until`, killed with SIGKILL at `point`."""
    killed = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.archive_crash", pg_dsn, archive.url, until.isoformat()),
        point,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **_s3_env(archive)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await killed.communicate()
    assert killed.returncode == -9, stderr.decode()


@pytest.mark.parametrize("point", ["detached", "appended", "written", "dropping"])
async def test_a_move_killed_midway_loses_and_duplicates_nothing_when_run_again(
    pool: asyncpg.Pool, archive: Archive, pg_dsn: str, point: str
) -> None:
    before = await _everything(pool, archive)
    await _killed_at(point, pg_dsn, archive, LATER)
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


@pytest.mark.parametrize("packed", [False, True])
async def test_an_alert_without_a_position_is_placed_at_the_wearers_last_fix(
    pool: asyncpg.Pool, packed: bool
) -> None:
    """Found through the devices the person wore (migration 0021), as an officer's SMS
    names the place, whether a row or packed; so is the map's newest position, and a
    phone's history for a missed check-in."""
    at = datetime(2030, 3, 5, 12, 0, tzinfo=UTC)
    positioned = [r for r in _fixes() if r[1] == "P1" and r[5] is not None]
    last = max((r for r in positioned if r[3] <= at), key=lambda r: r[3])
    newest = max(positioned, key=lambda r: r[3])
    history = (checkins._HISTORY, "T1", DAYS[0], at)
    if packed:
        before = await pool.fetch(*history)
        await compaction.run(pool, PACKED)
        assert await _rows(pool) == 0
        assert await pool.fetch(*history) == before and len(before) > 100
    alert = {"detail": {}, "supervisee_id": "P1", "ts": at, "type": "device_offline"}
    async with pool.acquire() as conn:
        place = await routing.place_of(conn, alert)
        [latest] = await tracks.latest_positions(conn, ["P1"])
    assert (place.lat, place.lon, place.note) == (last[5], last[6], "最后位置")
    assert (latest["device"], latest["ts"], latest["lat"]) == ("T1", newest[3], newest[5])


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


async def test_a_day_moved_in_pieces_is_one_file_sorted_by_person_as_if_written_at_once(
    pool: asyncpg.Pool, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of 50 fixes and row groups of 100: 4 March's morning packed, its afternoon
    rows; T1 worn by P2 until 06:00, then by P1, so that T1 is in two pieces, each with
    its person's fixes only; T3 worn by no one, last. Each day is one file in the order
    readers skip row groups by (person, device, time), its row groups full across the
    pieces, and reads back as the same fixes."""
    await pool.execute(
        "UPDATE fixes SET supervisee_id = 'P2' WHERE device_id = 'T1' AND ts < $1",
        datetime(2030, 3, 4, 6, tzinfo=UTC),
    )
    await compaction.run(pool, datetime(2030, 3, 4, 13, 10, tzinfo=UTC), rest=0)
    before = await _everything(pool, archive)
    monkeypatch.setattr("storage.archive.ROW_GROUP", 100)

    done = await archiving.run(pool, archive, LATER, 7, piece=50, rest=0)

    # Whole (person, device)s of at least 50 fixes: P1's T1; P2's T1 (36 fixes) and T2;
    # T3's. On 5 March the same without P2's T1.
    assert done["pieces"] == 2 * 3 and done["fixes"] == len(before)
    assert await _everything(pool, archive) == before
    for f, day in zip(done["files"], DAYS, strict=True):
        stored = pq.ParquetFile(archive.fs.open_input_file(f"{archive.root}/{f['key']}"))
        rows = [
            (r["supervisee_id"], r["device_id"], r["ts"], r["seq"])
            for r in stored.read().to_pylist()
        ]
        in_day = [r for r in before if r[3].date() == day]
        assert len(rows) == len(in_day) == f["fixes"]
        assert rows == sorted(rows, key=lambda r: (r[0] is None, r[0] or "", r[1], r[2], r[3]))
        groups = [stored.metadata.row_group(i).num_rows for i in range(stored.num_row_groups)]
        assert groups[:-1] == [100] * (len(groups) - 1) and 0 < groups[-1] <= 100
    assert [r[:2] for r in rows][:1] == [("P1", "T1")] and rows[-1][0] is None


async def test_a_file_that_does_not_read_back_as_postgresql_holds_it_is_not_moved(
    pool: asyncpg.Pool, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One fix of the second piece lost on its way into the file: the move stops, the day
    stays in PostgreSQL, and once the fault is gone the next run moves it whole."""
    before = await _everything(pool, archive)
    append, appended = DayFile.append_csv, []

    def lossy(self: DayFile, data: bytes) -> None:
        appended.append(data)
        if len(appended) == 2:
            data = data.split(b"\n", 1)[1]
        append(self, data)

    monkeypatch.setattr(DayFile, "append_csv", lossy)
    with pytest.raises(ArchiveError, match="does not read back"):
        await archiving.run(pool, archive, LATER, 7, piece=100, rest=0)
    assert await _everything(pool, archive) == before
    assert await pool.fetchval("SELECT count(*) FROM fixes_archive") == 0

    monkeypatch.setattr(DayFile, "append_csv", append)
    done = await archiving.run(pool, archive, LATER, 7, piece=100, rest=0)
    assert done["fixes"] == len(before) and len(done["swept"]) == 1
    assert await _everything(pool, archive) == before


async def test_a_move_gives_way_while_ingest_runs_behind(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    """Ingest's heartbeats say 900 ms after the first piece: the move waits after it until
    they say 100 ms, then goes on."""
    before = await _everything(pool, archive)
    said = [0.9, 0.9, 0.1]

    async def lag() -> float | None:
        return said.pop(0) if said else 0.1

    done = await archiving.run(pool, archive, LATER, 7, piece=200, rest=0, lag=lag)

    assert (done["gave_way"], said) == (1, [])
    assert done["fixes"] == len(before) and await _everything(pool, archive) == before


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


PACKED = datetime(2030, 3, 6, 1, 30, tzinfo=UTC)  # every hour of both days ended > 1 h ago


async def _rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM fixes"))


async def _ingest(conn: asyncpg.Connection, judged: list[Judged]) -> int:
    """Commit a batch as ingest does (ingest.writer); the fixes stored."""
    return (await commit(conn, judged, [], {}, [], [])).stored


def _judged(row: tuple[Any, ...], seq: int, at: datetime) -> Judged:
    """A fix as ingest would store it: `row`'s device and person, taken a second after it."""
    ms = epoch_ms(row[3]) + 1000
    fix = Fix(row[0], seq, ms, epoch_ms(at), row[5], row[6], acc=row[7], src=row[8])
    return Judged(fix, row[1], Policy(), 0, 10.0)


async def test_packed_hours_read_back_as_the_same_fixes_and_track(
    pool: asyncpg.Pool, archive: Archive, redis_url: str
) -> None:
    before = await _everything(pool, archive)
    app, token = await _api(pool, redis_url, archive)
    url = "/api/v1/supervisees/P1/track?from=2030-03-04T06:00:00%2B08:00&to=2030-03-06T00:00:00Z"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        track = await c.get(url, headers=headers)
        assert track.status_code == 200, track.text
        # At 12:10 on 5 March, the hours up to 11:00 are closed for more than an hour.
        some = await compaction.run(pool, datetime(2030, 3, 5, 12, 10, tzinfo=UTC))
        assert len(some["hours"]) == 24 + 11
        assert some["fixes"] == sum(
            1 for r in before if r[3] < datetime(2030, 3, 5, 11, tzinfo=UTC)
        )
        assert some["device_hours"] == 3 * (24 + 11)
        assert await _everything(pool, archive) == before
        halfway = await c.get(url, headers=headers)

        done = await compaction.run(pool, PACKED)

        assert some["fixes"] + done["fixes"] == len(before) and await _rows(pool) == 0
        assert await pool.fetchval("SELECT count(*) FROM fixes_hours") == 3 * 48
        assert await _everything(pool, archive) == before
        packed = await c.get(url, headers=headers)
    assert halfway.json() == track.json() and packed.json() == track.json()
    assert len(track.json()["features"]) > 200
    assert (await compaction.run(pool, PACKED))["hours"] == []
    # Moved with their day's partition, read back as the same fixes.
    moved = await archiving.run(pool, archive, LATER, 7)
    assert moved["fixes"] == len(before)
    assert await pool.fetchval("SELECT count(*) FROM fixes_hours") == 0
    assert await _everything(pool, archive) == before


async def test_a_late_fix_into_a_packed_hour_is_stored_once_and_its_redelivery_refused(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    await compaction.run(pool, PACKED)
    before = await _everything(pool, archive)
    packed = before[0]
    late = _judged(packed, 999, PACKED)
    again = Judged(
        Fix(packed[0], packed[2], epoch_ms(packed[3]), epoch_ms(PACKED)), "P1", Policy(), 0, 1.0
    )
    async with pool.acquire() as conn:
        newest = await conn.fetchval("SELECT last_value FROM fixes_rid_seq")
        # Ingest's batches: a fix buffered for a day, and a redelivery of a packed one.
        assert (await _ingest(conn, [late, again])) == 1
        assert (await _ingest(conn, [again, late])) == 0
        # A restore re-judging after its snapshot finds the late fix by commit order.
        found, _ = await committed_fixes(conn, newest, 10)
    assert [(f.device, f.seq) for f in found] == [(packed[0], 999)]
    stored = await _everything(pool, archive)
    assert len(stored) == len(before) + 1

    done = await compaction.run(pool, PACKED)  # merged into its device-hour

    assert (done["fixes"], done["device_hours"], await _rows(pool)) == (1, 1, 0)
    assert await _everything(pool, archive) == stored
    async with pool.acquire() as conn:
        assert await _ingest(conn, [late]) == 0


async def test_a_late_fix_a_snapshot_has_not_judged_stays_a_row_for_a_restore(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    snapshot = "INSERT INTO engine_snapshots (last_rid, last_event_rid, state) VALUES ($1, 0, '')"
    newest = await pool.fetchval("SELECT max(rid) FROM fixes")
    await pool.execute(snapshot, newest)
    await compaction.run(pool, PACKED)
    before = await _everything(pool, archive)
    late = _judged(before[0], 999, PACKED)
    async with pool.acquire() as conn:
        await _ingest(conn, [late])
    stored = await _everything(pool, archive)

    held = await compaction.run(pool, PACKED)

    assert (held["fixes"], await _rows(pool)) == (0, 1)
    async with pool.acquire() as conn:
        found, last = await committed_fixes(conn, newest, 10)
    assert [(f.device, f.seq) for f in found] == [(before[0][0], 999)]
    # Once every shard's snapshot has judged it, it is packed like the rest.
    await pool.execute(snapshot, last)
    assert (await compaction.run(pool, PACKED))["fixes"] == 1
    assert await _everything(pool, archive) == stored


async def test_a_purge_splits_the_packed_hour_spanning_its_cutoff(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    await compaction.run(pool, PACKED)
    before = await _everything(pool, archive)
    cutoff = datetime(2030, 3, 4, 10, 25, tzinfo=UTC)
    gone = [r for r in before if r[1] == "P1" and r[3] < cutoff]
    async with pool.acquire() as conn, conn.transaction():
        dry, _ = await history.purge(conn, archive, "P1", cutoff, dry_run=True)
        done, _ = await history.purge(conn, archive, "P1", cutoff)
    assert dry == done == {"fixes": len(gone), "archived_fixes": 0}
    assert await _everything(pool, archive) == [r for r in before if r not in gone]
    # 10:00–11:00 kept its fixes after 10:25; the hours before it are gone.
    hours = await pool.fetch(
        "SELECT hour, cardinality(ts) AS n FROM fixes_hours WHERE device_id = 'T1' ORDER BY hour"
    )
    assert hours[0]["hour"] == datetime(2030, 3, 4, 10, tzinfo=UTC)
    assert hours[0]["n"] == sum(
        1 for r in before if r[0] == "T1" and cutoff <= r[3] < datetime(2030, 3, 4, 11, tzinfo=UTC)
    )


@pytest.mark.parametrize("point", ["packing", "packed", "pieced"])
async def test_a_packing_killed_midway_loses_and_duplicates_nothing(
    pool: asyncpg.Pool, archive: Archive, pg_dsn: str, point: str
) -> None:
    before = await _everything(pool, archive)
    await _killed_at(point, pg_dsn, archive, PACKED)
    assert await _everything(pool, archive) == before
    packed = {"packing": 0, "packed": 3, "pieced": 1}[point]  # device-hours committed
    assert await pool.fetchval("SELECT count(*) FROM fixes_hours") == packed

    async def rerun() -> dict[str, Any] | None:
        done = await compaction.run(pool, PACKED)
        return None if "skipped" in done else done

    await eventually(rerun, "the killed run's lock was never released")

    assert await _rows(pool) == 0
    assert await _everything(pool, archive) == before


async def test_an_hour_is_packed_in_pieces_of_whole_device_hours(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    """A piece of 4 fixes holds the device of the 4th fix whole: T1's 5 or 6 of an hour,
    then T2's, then T3's, then none left: each device-hour one row with all its fixes."""
    before = await _everything(pool, archive)
    hour = datetime(2030, 3, 4, 0, tzinfo=UTC)
    done = await compaction.run(pool, hour + timedelta(hours=2), piece=4, rest=0)
    assert (done["hours"], done["device_hours"], done["pieces"]) == ([hour], 3, 4)
    rows = await pool.fetch(
        "SELECT device_id, cardinality(ts) AS n FROM fixes_hours ORDER BY device_id"
    )
    in_hour = [r for r in before if hour <= r[3] < hour + timedelta(hours=1)]
    assert [(r["device_id"], r["n"]) for r in rows] == [
        (d, sum(1 for r in in_hour if r[0] == d)) for d in WEARERS
    ]
    assert done["fixes"] == len(in_hour)
    # The rest in one piece an hour, and read back as the same fixes.
    rest = await compaction.run(pool, PACKED, piece=10_000, rest=0)
    assert rest["pieces"] == len(rest["hours"]) == 47 and await _rows(pool) == 0
    assert await _everything(pool, archive) == before


async def test_a_redelivery_racing_its_hours_packing_is_stored_once(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    """Ingest meets the row being packed: it waits for the packing, then finds the hour."""
    before = await _everything(pool, archive)
    first = before[0]
    again = Judged(
        Fix(first[0], first[2], epoch_ms(first[3]), epoch_ms(PACKED)), "P1", Policy(), 0, 1.0
    )
    hour = datetime(2030, 3, 4, 0, tzinfo=UTC)

    async with pool.acquire() as packing, pool.acquire() as ingest:
        packed = packing.transaction()
        await packed.start()
        await compaction.pack(packing, "fixes_2030_03_04", hour, 2**63 - 1)
        redelivered = asyncio.create_task(_ingest(ingest, [again]))
        await asyncio.sleep(0.5)
        assert not redelivered.done()  # behind the packing's delete of the row
        await packed.commit()
        assert await redelivered == 0
    assert await _everything(pool, archive) == before


async def test_packing_waits_while_a_move_or_purge_holds_the_archive(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    async with pool.acquire() as purging:
        await purging.execute("SELECT pg_advisory_lock($1)", archiving.LOCK_ID)
        held = await compaction.run(pool, PACKED)
        await purging.execute("SELECT pg_advisory_unlock($1)", archiving.LOCK_ID)
    assert (held["hours"], "skipped" in held) == ([], True)
    assert len((await compaction.run(pool, PACKED))["hours"]) == 48


async def test_packing_waits_while_ingest_runs_behind_and_goes_on_once_it_caught_up(
    pool: asyncpg.Pool, archive: Archive, redis_url: str
) -> None:
    """Two workers say in their heartbeats how long their fixes waited for the commit; one
    says 900 ms: after its piece the packing waits, and goes on once that worker's next
    heartbeat says 50 ms. A worker gone is not listened to."""
    before = await _everything(pool, archive)
    redis = Redis.from_url(redis_url)
    calm, behind, gone = (Leases(redis, "dep", w) for w in ("w1", "w2", "w3"))
    await calm.heartbeat(100)
    await behind.heartbeat(900)
    await gone.heartbeat(60_000)
    await gone.leave()
    said: list[float | None] = []

    async def lag() -> float | None:
        said.append(await ingest_lag(redis, "dep"))
        if len(said) == 2:
            await behind.heartbeat(50)  # ingest has caught up
        return said[-1]

    hour = datetime(2030, 3, 4, 0, tzinfo=UTC)
    try:
        done = await compaction.run(pool, hour + timedelta(hours=2), piece=4, rest=0, lag=lag)
    finally:
        await redis.aclose()
    assert (done["pieces"], done["gave_way"]) == (4, 1)
    assert said == [0.9, 0.9, 0.1, 0.1, 0.1]
    assert await _everything(pool, archive) == before


async def test_packing_goes_on_at_its_own_pace_when_redis_does_not_answer(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    before = await _everything(pool, archive)
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    hour = datetime(2030, 3, 4, 0, tzinfo=UTC)
    try:
        lag = functools.partial(ingest_lag, redis, "dep")
        done = await compaction.run(pool, hour + timedelta(hours=2), piece=4, rest=0, lag=lag)
    finally:
        await redis.aclose()
    in_hour = [r for r in before if hour <= r[3] < hour + timedelta(hours=1)]
    assert (done["pieces"], done["gave_way"], done["fixes"]) == (4, 0, len(in_hour))
