"""Issue 2's end-to-end checks over the real Mosquitto, PostgreSQL and Redis: a tag walks
out of 莲都区 and the alert appears through the API; redeliveries and reordering change
nothing; hostile payloads are rejected with reasons and never stop the service."""

from __future__ import annotations

import random
import time
import uuid

import asyncpg
import pytest

from fencewatch.timefmt import iso
from tests.kit import (
    LIANDU,
    LIANDU_SEAT,
    T0,
    border_crossing,
    line,
    lishui_collection,
    qingtian_point,
)
from tests.live import eventually, running

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [{"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]}],
}


def walk_out() -> list[dict]:
    """A drive into 青田 over the last five minutes, a fix every 10 s, ending now: recent
    enough that the breach is a live one, not a late one."""
    t0 = int(time.time() * 1000) - 30 * 10_000
    target = qingtian_point()
    border = border_crossing(LIANDU_SEAT, target, LIANDU)
    inside = line(LIANDU_SEAT, border, 15, t0=t0, interval_s=10)
    beyond = line(border, target, 100, t0=inside[-1]["ts"] + 10_000, interval_s=10, seq0=16)[:15]
    return [{"v": 1, **f} for f in inside + beyond]


async def test_a_tag_leaving_raises_one_alert_through_the_api(pg_dsn, redis_url, mqtt_url) -> None:
    fixes = walk_out()
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        for f in fixes:
            live.device.publish("em/T1/loc", f)
        alerts = await eventually(
            lambda: live.alerts(supervisee="S1", type="jurisdiction_exit"), "no alert"
        )
        assert len(alerts) == 1 and alerts[0]["status"] == "open"
        assert alerts[0]["device"] == "T1" and alerts[0]["late"] is False

        # The same fixes again, shuffled, as QoS 1 redeliveries and a confused device.
        again = fixes[:]
        random.Random(5).shuffle(again)
        for f in again:
            live.device.publish("em/T1/loc", f)
        start, end = iso(fixes[0]["ts"] - 60_000), iso(fixes[-1]["ts"] + 60_000)

        async def all_handled() -> bool:
            received = await live.service.pool.fetchval(
                "SELECT count(*) FROM fixes WHERE device_id = 'T1'"
            )
            return live.service.backlog == 0 and received == len(fixes)

        await eventually(all_handled, "fixes not stored")
        track = await live.track("S1", start, end)
        assert sorted(p["properties"]["seq"] for p in track) == [f["seq"] for f in fixes]
        assert len(await live.alerts(supervisee="S1")) == 1


HOSTILE = [
    ("em/T1/loc", b"{not json"),
    ("em/T1/loc", b'{"v":1,"seq":"7","ts":1,"lat":1,"lon":1}'),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":%d,"lat":NaN,"lon":1}' % T0),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":%d,"lat":95.0,"lon":119.9}' % T0),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":%d,"lat":28.4,"lon":119.9,"acc":-3}' % T0),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":99999999999999,"lat":28.4,"lon":119.9}'),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":1000,"lat":28.4,"lon":119.9}'),
    ("em/T1/loc", b'{"v":2,"seq":7,"ts":%d,"lat":28.4,"lon":119.9}' % T0),
    ("em/T1/loc", b'{"v":1,"dev":"T2","seq":7,"ts":%d,"lat":28.4,"lon":119.9}' % T0),
    ("em/T1/loc", b'{"v":1,"batch":[]}'),
    ("em/T1/loc", b"[" * 5000 + b"]" * 5000),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":%d,"pad":"%s"}' % (T0, b"x" * 300_000)),
    ("em/T1/evt", b'{"v":1,"seq":7,"ts":%d,"type":"self_destruct"}' % T0),
    ("em/NOBODY/loc", b'{"v":1,"seq":7,"ts":%d,"lat":28.4,"lon":119.9}' % T0),
    ("em/T1/loc", b'{"v":1,"seq":7,"ts":%d,"lat":28.4,"lon":119.9,"crs":"bd09"}' % T0),
    ("owntracks/eve/phone", b'{"_type":"location","lat":28.4,"lon":119.9,"tst":1}'),
    ("em/T1/loc", "\u202e\x00\ud7ff".encode("utf-8", "surrogatepass")),
]


async def test_hostile_payloads_are_rejected_and_the_next_fix_is_stored(
    pg_dsn, redis_url, mqtt_url
) -> None:
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        now = int(time.time() * 1000)
        for topic, payload in HOSTILE:
            live.device.publish(topic, payload.replace(str(T0).encode(), str(now).encode()))
        good = {"v": 1, "seq": 1, "ts": now, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1], "acc": 5}
        live.device.publish("em/T1/loc", good)

        async def stored() -> int:
            return await live.service.pool.fetchval("SELECT count(*) FROM fixes")

        assert await eventually(stored, "the valid fix was not stored") == 1
        reasons = await live.service.pool.fetch("SELECT reason FROM rejected_messages")
        assert len(reasons) == len(HOSTILE)
        assert all(": " in r["reason"] for r in reasons)
        health = await live.http.get("/healthz")
        assert health.status_code == 200
        metrics = (await live.http.get("/metrics")).text
        assert 'fencewatch_fixes_rejected_total{reason="schema"}' in metrics
        assert "fencewatch_fixes_received_total" in metrics


@pytest.mark.parametrize("stalled", ["fixes", "engine_snapshots"], ids=["commit", "snapshot"])
async def test_a_stop_is_not_held_up_by_a_stalled_database_and_loses_no_fix(
    stalled: str, pg_dsn, redis_url, mqtt_url
) -> None:
    """An operator restarts the service while PostgreSQL has stalled (another session holds
    a lock on the table ingest's commit, or the shard's closing snapshot, writes to): the
    service stops all the same, and once PostgreSQL answers again the restarted service has
    the fix, stored once, whether it was committed before the stop or redelivered after."""
    fix = walk_out()[-1]
    restart = {"client_id": f"fencewatch-test-{uuid.uuid4().hex[:8]}"}
    blocker = await asyncpg.connect(pg_dsn)

    async def stored() -> int:
        return int(await blocker.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'T1'"))

    async def waiting_on_the_lock() -> bool:
        return bool(
            await blocker.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE NOT l.granted AND d.datname = current_database()"
            )
        )

    try:
        async with running(
            pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER, settings=restart
        ) as live:
            if stalled == "engine_snapshots":
                live.device.publish("em/T1/loc", fix)
                await eventually(stored, "the fix was not stored")
            await blocker.execute("BEGIN")
            await blocker.execute(f"LOCK TABLE {stalled} IN ACCESS EXCLUSIVE MODE")
            if stalled == "fixes":
                live.device.publish("em/T1/loc", fix)
                await eventually(waiting_on_the_lock, "the fix's commit never met the lock")
        # Leaving `running` stopped the service, or failed that it did not stop.
        await blocker.execute("ROLLBACK")
        async with running(
            pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER, settings=restart
        ):
            await eventually(stored, "the fix was lost")
            assert await stored() == 1
    finally:
        await blocker.close()
