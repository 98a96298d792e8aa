"""The live proximity check (ingest/proximity.py) against a real Redis and PostgreSQL: it
reads the sightings the shards append, raises `contact` once for each of the two, and a
restart in the middle of a meeting takes up where the saved state left off — the meeting
is confirmed once, not again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import msgspec
from redis.asyncio import Redis

from alerts.feed import SIGHTINGS
from fencewatch.loader import load_scenario
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from ingest.proximity import ProximityCheck
from storage.db import open_pool
from storage.rules import load_rules
from tests.kit import LIANDU, LIANDU_SEAT, T0, lishui_collection, offset


async def _rules(pool: asyncpg.Pool, tmp_path: Path) -> RuleSet:
    (tmp_path / "zones.geojson").write_text(json.dumps(lishui_collection()))
    roster = {
        "supervisees": [
            {"id": p, "jurisdiction": [LIANDU], "devices": [f"T{p}"]} for p in ("S1", "S2")
        ],
        "no_contact": [{"id": "NC1", "people": ["S1", "S2"]}],
    }
    (tmp_path / "roster.json").write_text(json.dumps(roster))
    await load_scenario(pool, tmp_path)
    async with pool.acquire() as conn:
        people, zones = await load_rules(conn, "Asia/Shanghai")
    return RuleSet(people, zones)


async def _append(redis: Redis, minutes: range) -> str:
    entry = b""
    for k in minutes:
        ts = T0 + k * 30_000
        batch = []
        for person, east in (("S1", 0.0), ("S2", 40.0)):
            lat, lon = offset(LIANDU_SEAT, east, 0.0)
            batch.append(Sighting(person, f"T{person}", lat, lon, 16.0, ts + (person == "S2")))
        entry = await redis.xadd(SIGHTINGS, {"s": msgspec.msgpack.encode(batch)})
    return entry.decode()


async def _reach(check: ProximityCheck, entry: str) -> None:
    async with asyncio.timeout(30):
        while check.entry != entry:  # noqa: ASYNC110 - the check's own loop moves it
            await asyncio.sleep(0.05)


async def test_a_restart_mid_meeting_confirms_it_once(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    pool = await open_pool(pg_dsn, min_size=1, max_size=4)
    redis = Redis.from_url(redis_url)
    try:
        rules = await _rules(pool, tmp_path)
        first = ProximityCheck(pool, redis, lambda: rules)
        first.entry = "0-0"  # the stream is new: from its start, not from what comes next
        stop = asyncio.Event()
        running = asyncio.create_task(first.run(stop))
        await _reach(first, await _append(redis, range(6)))  # three minutes together
        await first.save()
        stop.set()
        await running
        assert await pool.fetchval("SELECT count(*) FROM alerts") == 0

        again = ProximityCheck(pool, redis, lambda: rules)
        stop = asyncio.Event()
        running = asyncio.create_task(again.run(stop))
        await _reach(again, await _append(redis, range(6, 14)))
        stop.set()
        await running
        rows = await pool.fetch(
            "SELECT type, supervisee_id, detail->>'start' AS start FROM alerts ORDER BY 2"
        )
        # Five minutes from the first sighting together, before the restart.
        assert [(r["type"], r["supervisee_id"], int(r["start"])) for r in rows] == [
            ("contact", "S1", T0 + 1),
            ("contact", "S2", T0 + 1),
        ]
    finally:
        await redis.aclose()
        await pool.close()
