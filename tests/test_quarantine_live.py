"""Issue 13, item 2, end to end on the real Mosquitto, PostgreSQL and Redis: a zone and a
heightened period written into the database behind the API's back, designed to make the
engine raise, leave the service judging everyone else's fixes; the poisoned person's
messages are kept as quarantined and operators get an engine_fault alert."""

from __future__ import annotations

import time

import asyncpg
import pytest

from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection
from tests.live import eventually, running
from tests.test_live_ingest import walk_out

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # GEOS overflowing, as meant

ZONES = {
    **lishui_collection(),
    "features": [
        *lishui_collection()["features"],
        {
            "type": "Feature",
            "properties": {"id": "X", "kind": "exclusion", "radius": 300},
            "geometry": {"type": "Point", "coordinates": [LIANDU_SEAT[1], LIANDU_SEAT[0]]},
        },
    ],
}
ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]},
        {"id": "S2", "jurisdiction": [LIANDU], "exclusion": ["X"], "devices": ["T2"]},
    ],
}


async def _poison(pool: asyncpg.Pool) -> None:
    """What issue 13 sent through the API (now refused there), written straight in."""
    await pool.execute("UPDATE zones SET radius_m = 1e308 WHERE id = 'X'")
    await pool.execute(
        "INSERT INTO heightened_periods (id, starts_at, ends_at, policy)"
        " VALUES ('bad', now() - interval '1 day', now() + interval '1 day',"
        ' \'{"offline_s": "soon", "acc_max_m": 1e308}\')'
    )


def _s2(seq: int) -> dict:
    """A fix of T2 at its exclusion zone, with an error circle the poisoned zone fails on."""
    ts = int(time.time() * 1000) - 60_000 + seq * 1000
    return {"v": 1, "seq": seq, "ts": ts, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1], "acc": 30}


async def test_a_poisoned_zone_and_policy_stop_nobody_else(pg_dsn, redis_url, mqtt_url) -> None:
    fixes = walk_out()
    async with running(pg_dsn, redis_url, mqtt_url, ZONES, ROSTER, _poison) as live:
        for i, f in enumerate(fixes):
            live.device.publish("em/T1/loc", f)
            if i % 10 == 0:
                live.device.publish("em/T2/loc", _s2(i))
        pool = live.service.pool

        async def all_t1_stored() -> bool:
            stored = await pool.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'T1'")
            return stored == len(fixes)

        await eventually(all_t1_stored, "S1's fixes were not all judged and stored")
        exits = await eventually(
            lambda: live.alerts(supervisee="S1", type="jurisdiction_exit"), "S1 not alerted"
        )
        assert len(exits) == 1
        [fault] = await eventually(
            lambda: live.alerts(supervisee="S2", type="engine_fault"), "no engine_fault alert"
        )
        assert fault["device"] == "T2" and fault["severity"] == "high"
        assert "GEOSException" in fault["detail"]["error"]
        quarantined = await eventually(
            lambda: pool.fetch(
                "SELECT topic, reason FROM rejected_messages WHERE reason LIKE 'quarantined:%'"
            ),
            "nothing quarantined",
        )
        assert {r["topic"] for r in quarantined} == {"em/T2/loc"}
        assert await pool.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'T2'") == 0
        # The webhook hears of it like of any alert.
        outbox = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE payload -> 'alert' ->> 'type' = 'engine_fault'"
        )
        assert outbox == 1
        assert (await live.http.get("/healthz")).status_code == 200
        metrics = (await live.http.get("/metrics")).text
        assert 'fencewatch_fixes_rejected_total{reason="quarantined"}' in metrics

        # More of the same: quarantined again, still one alert; and the service judges on.
        published = len(quarantined)
        for seq in range(100, 103):
            live.device.publish("em/T2/loc", _s2(seq))
        await eventually(
            lambda: _count_quarantined(pool, published + 3), "later messages not quarantined"
        )
        assert len(await live.alerts(type="engine_fault")) == 1
        good = {**fixes[-1], "seq": fixes[-1]["seq"] + 1, "ts": fixes[-1]["ts"] + 1000}
        live.device.publish("em/T1/loc", good)
        await eventually(
            lambda: _count(pool, "T1", len(fixes) + 1), "the engine stopped judging after a fault"
        )


async def _count_quarantined(pool: asyncpg.Pool, n: int) -> bool:
    found = await pool.fetchval(
        "SELECT count(*) FROM rejected_messages WHERE reason LIKE 'quarantined:%'"
    )
    return bool(found == n)


async def test_a_zone_poisoned_after_its_fixes_were_stored_lets_the_service_start(
    pg_dsn, redis_url, mqtt_url
) -> None:
    """A restart judges the fixes committed since the last snapshot again: those the
    poisoned rules now make the engine raise on are left out, not the start."""
    async with running(pg_dsn, redis_url, mqtt_url, ZONES, ROSTER) as live:
        for seq in range(1, 6):
            live.device.publish("em/T2/loc", _s2(seq))
        await eventually(lambda: _count(live.service.pool, "T2", 5), "T2's fixes not stored")

    async def crashed_then_poisoned(pool: asyncpg.Pool) -> None:
        await pool.execute("DELETE FROM engine_snapshots")  # as if killed before one
        await _poison(pool)

    async with running(pg_dsn, redis_url, mqtt_url, ZONES, ROSTER, crashed_then_poisoned) as live:
        fixes = walk_out()
        for f in fixes:
            live.device.publish("em/T1/loc", f)
        await eventually(lambda: _count(live.service.pool, "T1", len(fixes)), "T1 not judged")
        assert (await live.http.get("/healthz")).status_code == 200


async def _count(pool: asyncpg.Pool, device: str, n: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM fixes WHERE device_id = $1", device) == n)
