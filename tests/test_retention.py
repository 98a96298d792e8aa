"""Retention on the real PostgreSQL: location data of people released more than the
retention period ago is purged — only theirs, only what is older than the period — and the
purge is in the audit log with its counts; the case record stays."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis

from alerts.feed import SIGHTINGS, Feed
from duties import retention
from duties.retention import purge
from fencewatch.config import DEFAULT_RETENTION_DAYS, ConfigError, Settings
from geofence.engine import Engine
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from storage.archive import Archive
from storage.db import open_pool
from storage.repo import offices as offices_repo
from storage.rules import load_rules
from tests.kit import in_redis
from tests.live import eventually

NOW = datetime(2031, 6, 1, 4, 0, tzinfo=UTC)
DAYS = 1826
CUTOFF = NOW - timedelta(days=DAYS)  # 2026-06-01 04:00 UTC

# id: (status, term_end)
PEOPLE = {
    "GONE": ("released", date(2025, 12, 31)),  # ended before the cutoff: purged
    "RECENT": ("released", date(2027, 3, 1)),  # ended after it: kept
    "EDGE": ("released", CUTOFF.date()),  # ends on the cutoff's day: kept (a day of grace)
    "ACTIVE": ("active", date(2020, 1, 1)),  # still supervised (a new term): kept
    "NOEND": ("released", None),  # released, end unknown: kept, and reported
}
OLD = [datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=30 * i) for i in range(6)]
NEWER = CUTOFF + timedelta(days=3)  # a fix after the cutoff (device worn after release)
# Nothing archived here (tests/test_archive.py purges the archive tier).
ARCHIVE = Archive(tempfile.mkdtemp(prefix="fencewatch-archive-"))


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await offices_repo.upsert_office(conn, "S1", "紫金司法所", "station", None)
        for person, (status, term_end) in PEOPLE.items():
            await conn.execute(
                "INSERT INTO supervisees (id, office_id, status, term_end)"
                " VALUES ($1, 'S1', $2, $3)",
                person,
                status,
                term_end,
            )
            device = f"T-{person}"
            for seq, ts in enumerate([*OLD, NEWER], 1):
                await conn.execute(
                    "INSERT INTO fixes (device_id, supervisee_id, seq, ts, received_at, lat, lon)"
                    " VALUES ($1, $2, $3, $4, $4, 28.45, 119.9)",
                    device,
                    person,
                    seq,
                    ts,
                )
                await conn.execute(
                    "INSERT INTO device_events"
                    " (device_id, seq, ts, received_at, type, supervisee_id)"
                    " VALUES ($1, $2, $3, $3, 'low_battery', $4)",
                    device,
                    seq,
                    ts,
                    person,
                )
            await conn.execute(
                "INSERT INTO alerts (key, type, supervisee_id, device_id, ts)"
                " VALUES ($1, 'jurisdiction_exit', $2, $3, $4)",
                uuid.uuid4().hex,
                person,
                device,
                OLD[0],
            )
        for at in (OLD[0], NEWER):
            await conn.execute(
                "INSERT INTO rejected_messages (received_at, topic, payload, reason)"
                " VALUES ($1, 'em/T-GONE/loc', '\\x7b'::bytea, 'malformed: test')",
                at,
            )
    try:
        yield pool
    finally:
        await pool.close()


async def _counts(pool: asyncpg.Pool, table: str) -> dict[str, int]:
    rows = await pool.fetch(
        f"SELECT supervisee_id AS id, count(*) AS n FROM {table} GROUP BY supervisee_id"
    )
    return {r["id"]: r["n"] for r in rows}


async def test_purge_deletes_only_what_is_past_retention(pool: asyncpg.Pool) -> None:
    done = await purge(pool, NOW, DAYS, archive=ARCHIVE)

    assert done["supervisees"] == 1 and list(done["purged"]) == ["GONE"]
    assert done["purged"]["GONE"] == {
        "fixes": len(OLD),
        "archived_fixes": 0,
        "device_events": len(OLD),
    }
    assert done["fixes"] == len(OLD) and done["device_events"] == len(OLD)
    assert done["rejected_messages"] == 1
    assert done["released_without_term_end"] == ["NOEND"]
    assert done["cutoff"] == CUTOFF.isoformat()

    everyone = len(OLD) + 1
    expected = {p: everyone for p in PEOPLE} | {"GONE": 1}  # GONE keeps the newer fix
    assert await _counts(pool, "fixes") == expected
    assert await _counts(pool, "device_events") == expected
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 1
    # The case record stays.
    assert await pool.fetchval("SELECT count(*) FROM alerts") == len(PEOPLE)
    assert await pool.fetchval("SELECT count(*) FROM supervisees") == len(PEOPLE)


async def test_the_purge_is_in_the_audit_log_with_its_counts(pool: asyncpg.Pool) -> None:
    await purge(pool, NOW, DAYS, archive=ARCHIVE)
    rows = await pool.fetch(
        "SELECT actor, role, action, object, supervisee_id, office_id, detail FROM audit_log"
        " WHERE actor = 'fencewatch retention' ORDER BY id"
    )
    assert [r["action"] for r in rows] == ["retention.purge", "retention.run"]
    person, run = rows
    assert person["object"] == "supervisee:GONE" and person["role"] is None
    # Scoped like any row about the person: their county sees that their data went.
    assert (person["supervisee_id"], person["office_id"]) == ("GONE", "S1")
    assert person["detail"] == {
        "fixes": len(OLD),
        "archived_fixes": 0,
        "device_events": len(OLD),
        "term_end": "2025-12-31",
        "cutoff": CUTOFF.isoformat(),
        "days": DAYS,
    }
    assert run["object"] == "retention"
    assert run["detail"]["fixes"] == len(OLD) and run["detail"]["supervisees"] == 1
    assert run["detail"]["rejected_messages"] == 1
    assert run["detail"]["released_without_term_end"] == ["NOEND"]


async def test_a_second_run_finds_nothing_and_still_says_it_ran(pool: asyncpg.Pool) -> None:
    await purge(pool, NOW, DAYS, archive=ARCHIVE)
    again = await purge(pool, NOW, DAYS, archive=ARCHIVE)
    assert again["supervisees"] == 0 and again["fixes"] == 0 and again["purged"] == {}
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("retention.purge") == 1
    assert actions.count("retention.run") == 2


async def test_a_shorter_period_reaches_more_people(pool: asyncpg.Pool) -> None:
    # Five years on from 2027: RECENT's term has ended long enough ago too.
    later = await purge(pool, datetime(2032, 6, 1, tzinfo=UTC), DAYS, archive=ARCHIVE)
    assert sorted(later["purged"]) == ["EDGE", "GONE", "RECENT"]
    assert "ACTIVE" not in later["purged"] and "NOEND" not in later["purged"]


async def test_dry_run_counts_and_deletes_nothing(pool: asyncpg.Pool) -> None:
    before = await _counts(pool, "fixes")
    dry = await purge(pool, NOW, DAYS, archive=ARCHIVE, dry_run=True)
    assert dry["dry_run"] and dry["purged"] == {
        "GONE": {"fixes": len(OLD), "archived_fixes": 0, "device_events": len(OLD)}
    }
    assert dry["rejected_messages"] == 1
    assert await _counts(pool, "fixes") == before
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 2
    assert not await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE actor = 'fencewatch retention'"
    )


async def test_one_purge_at_a_time(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", retention._LOCK_ID)
        try:
            busy = await purge(pool, NOW, DAYS, archive=ARCHIVE)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", retention._LOCK_ID)
    assert busy["skipped"] == "another purge is running" and busy["fixes"] == 0
    assert (await _counts(pool, "fixes"))["GONE"] == len(OLD) + 1
    assert (await purge(pool, NOW, DAYS, archive=ARCHIVE))["fixes"] == len(OLD)


async def test_the_daily_job_runs_the_purge(pool: asyncpg.Pool) -> None:
    # The job runs on the real clock: someone released 200 days ago, with a 100-day period.
    today = datetime.now(UTC)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO supervisees (id, status, term_end) VALUES ('JOB', 'released', $1)",
            (today - timedelta(days=200)).date(),
        )
        await conn.execute(
            "INSERT INTO fixes (device_id, supervisee_id, seq, ts, received_at)"
            " VALUES ('T-JOB', 'JOB', 1, $1, $1)",
            today - timedelta(days=250),
        )
    task = asyncio.create_task(retention.job(pool, 100, ARCHIVE, first_after_s=0, every_s=3600))
    try:

        async def ran() -> bool:
            return bool(
                await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'retention.run'")
            )

        await eventually(ran, "the job never ran the purge")
        assert not task.done()  # and waits for the next day
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    purged = await pool.fetch("SELECT object FROM audit_log WHERE action = 'retention.purge'")
    assert "supervisee:JOB" in {r["object"] for r in purged}
    assert not await pool.fetchval("SELECT count(*) FROM fixes WHERE supervisee_id = 'JOB'")


async def test_a_failed_run_is_logged_and_the_job_goes_on(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = await asyncpg.create_pool(pg_dsn, min_size=0, max_size=1)
    await closed.close()  # as good as a database that went away
    task = asyncio.create_task(retention.job(closed, 100, ARCHIVE, first_after_s=0, retry_s=3600))
    try:

        async def failed() -> bool:
            return any("retention purge failed" in r.getMessage() for r in caplog.records)

        await eventually(failed, "the failure was not logged")
        assert not task.done()  # waiting to retry, not dead
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_the_period_comes_from_the_environment() -> None:
    assert Settings.from_env({}).retention_days == DEFAULT_RETENTION_DAYS == 1826
    assert Settings.from_env({"FENCEWATCH_RETENTION_DAYS": " 3650 "}).retention_days == 3650
    for bad in ("0", "-5", "five years", "1.5"):
        with pytest.raises(ConfigError, match="FENCEWATCH_RETENTION_DAYS"):
            Settings.from_env({"FENCEWATCH_RETENTION_DAYS": bad})


async def test_purge_refuses_nonsense(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="at least"):
        await purge(pool, NOW, 0, archive=ARCHIVE)
    with pytest.raises(ValueError, match="timezone"):
        await purge(pool, NOW.replace(tzinfo=None), DAYS, archive=ARCHIVE)


async def test_a_protected_person_goes_with_the_order_and_their_place_with_them(
    pool: asyncpg.Pool, redis_url: str
) -> None:
    """Released means the order is over: the protected person and where they were are
    purged at once, whatever the retention period, from PostgreSQL and from the service's
    Redis; an active person's protection stays."""
    for person in ("RECENT", "ACTIVE"):
        await pool.execute(
            "INSERT INTO protected_persons (id, supervisee_id, device_id, owntracks, sms)"
            " VALUES ($1, $2, $3, $4, '+8613800000000')",
            f"PP-{person}",
            person,
            f"V-{person}",
            f"victim/{person}",
        )
        await pool.execute(
            "INSERT INTO alerts (key, type, supervisee_id, device_id, ts, detail)"
            " VALUES ($1, 'protected_proximity', $2, $3, $4, $5)",
            uuid.uuid4().hex,
            person,
            f"T-{person}",
            NEWER,
            {"order": f"PP-{person}", "protected": {"lat": 28.45, "lon": 119.9}},
        )
    # Each phone's sighting appended by its shard, at a place of its own.
    async with pool.acquire() as conn:
        roster, zones = await load_rules(conn, "Asia/Shanghai")
    shard = Engine(RuleSet(roster, zones))
    places = {"RECENT": (28.4111111, 119.9111111), "ACTIVE": (28.4222222, 119.9222222)}
    seen = [
        Sighting(f"protected:PP-{person}", f"V-{person}", *place, 10.0, int(NEWER.timestamp()))
        for person, place in places.items()
    ]
    redis = Redis.from_url(redis_url)
    try:
        await Feed(redis).publish((), [], shard, seen)
        assert await in_redis(redis, *places["RECENT"]) == {SIGHTINGS}
        done = await purge(pool, NOW, DAYS, archive=ARCHIVE, redis=redis)
        assert await in_redis(redis, *places["RECENT"]) == set()
        assert await in_redis(redis, *places["ACTIVE"]) == {SIGHTINGS}
    finally:
        await redis.aclose()
    assert done["protected_persons"] == 1
    assert await pool.fetchval("SELECT array_agg(id) FROM protected_persons") == ["PP-ACTIVE"]
    kept = await pool.fetch(
        "SELECT supervisee_id, detail ? 'protected' AS placed FROM alerts"
        " WHERE type = 'protected_proximity' ORDER BY 1"
    )
    assert [tuple(r) for r in kept] == [("ACTIVE", True), ("RECENT", False)]
    [row] = await pool.fetch(
        "SELECT object, detail FROM audit_log WHERE action = 'retention.protected'"
    )
    assert row["object"] == "supervisee:RECENT"
    assert row["detail"] == {"protected": "PP-RECENT", "alerts": 1}
