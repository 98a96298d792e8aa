"""People near people, live, across shards: 8 shards shared by two `fencewatch serve`
workers; two people under a no-contact order who belong to different shards meet, and three
others gather at a market. The shards append their trusted sightings to Redis; the one
proximity check (worker 0, the scheduler) raises `contact` for each of the two and one
`gathering` listing the three (ingest/proximity.py). A protected person's phone walking up to
the supervisee it protects them from raises `protected_proximity`, and they are warned by
SMS; where they were is in that alert's evidence and nowhere else."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from redis import Redis

from alerts.feed import LATEST
from fencewatch.embedded import free_port
from fencewatch.loader import load_scenario
from ingest.shards import shard_of
from storage.db import open_pool
from tests.faults import Stack, needs_private_stack, until
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection, offset
from tests.test_alerting import SMS_SECRET, SmsGateway
from tests.test_workers import shared_out

pytestmark = needs_private_stack

SHARDS = 8
ROUNDS = 30  # one fix each every 2 s: a minute of meeting
MEETING_S = 20  # the order's confirmation time, and the gathering's hold


def _pair_in_two_shards() -> tuple[str, str]:
    first = "NC-A"
    other = next(
        f"NC-B{n}" for n in range(100) if shard_of(f"NC-B{n}", SHARDS) != shard_of(first, SHARDS)
    )
    return first, other


async def _load(
    stack: Stack, people: dict[str, tuple[float, float]], extra: dict[str, Any]
) -> None:
    scenario = stack.root / "scenario"
    scenario.mkdir(exist_ok=True)
    (scenario / "zones.geojson").write_text(json.dumps(lishui_collection()))
    roster = {
        "supervisees": [{"id": p, "jurisdiction": [LIANDU], "devices": [f"T{p}"]} for p in people],
        **extra,
    }
    (scenario / "roster.json").write_text(json.dumps(roster))
    pool = await open_pool(stack.pg.url, min_size=1, max_size=2)
    try:
        await load_scenario(pool, scenario)
    finally:
        await pool.close()


def _publish(stack: Stack, people: dict[str, tuple[float, float]]) -> threading.Thread:
    """Everyone reports where they stand every 2 s, in real time (fixes older than 5 min
    are late, and late fixes place nobody)."""

    def run() -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="proximity-publisher")
        client.connect("127.0.0.1", stack.mqtt_port)
        client.loop_start()
        for seq in range(1, ROUNDS + 1):
            now = int(time.time() * 1000)
            for person, (lat, lon) in people.items():
                fix = {"v": 1, "seq": seq, "ts": now, "lat": lat, "lon": lon, "acc": 6.0}
                client.publish(f"em/T{person}/loc", json.dumps(fix), qos=1).wait_for_publish(30)
            time.sleep(2)
        client.loop_stop()
        client.disconnect()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_contact_across_shards_and_a_gathering_on_two_workers(stack: Stack) -> None:
    a, b = _pair_in_two_shards()
    cafe, market = offset(LIANDU_SEAT, 600, 200), offset(LIANDU_SEAT, -1500, 900)
    people = {
        a: cafe,
        b: offset(cafe, 25, 10),
        "G1": market,
        "G2": offset(market, 30, 0),
        "G3": offset(market, 0, 30),
    }
    await _load(
        stack,
        people,
        {
            "no_contact": [{"id": "NC1", "people": [a, b], "confirm_s": MEETING_S}],
            "gathering": {"hold_s": MEETING_S},
        },
    )
    stack.start_service(0, SHARDS)
    stack.start_service(1, SHARDS, roles="ingest")
    await shared_out(stack, {0: SHARDS // 2, 1: SHARDS // 2})
    publisher = _publish(stack, people)

    async def alerts() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(stack.pg.url)
        try:
            return await conn.fetch(
                "SELECT type, supervisee_id, detail FROM alerts ORDER BY type, supervisee_id"
            )
        finally:
            await conn.close()

    async def raised() -> bool:
        found = await alerts()
        return sum(r["type"] == "contact" for r in found) == 2 and any(
            r["type"] == "gathering" for r in found
        )

    await until(raised, "no contact for both people, or no gathering")
    publisher.join()
    found = await alerts()
    assert [(r["type"], r["supervisee_id"]) for r in found if r["type"] == "contact"] == sorted(
        [("contact", a), ("contact", b)]
    )
    gatherings = [r for r in found if r["type"] == "gathering"]
    assert len(gatherings) == 1
    assert json.loads(gatherings[0]["detail"])["people"] == ["G1", "G2", "G3"]
    # Nothing else: the pair at the café are two, not a gathering.
    assert {r["type"] for r in found} == {"contact", "gathering"}


VICTIM_PHONE = "+8613900000017"


def _walk_up(
    stack: Stack, start: tuple[float, float], home: tuple[float, float]
) -> threading.Thread:
    """The protected person's OwnTracks phone walks from `start` to beside `home`, one fix
    every 2 s, while the supervisee's tag reports from `home`."""

    def run() -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="protected-publisher")
        client.connect("127.0.0.1", stack.mqtt_port)
        client.loop_start()
        for seq in range(1, ROUNDS + 1):
            now = int(time.time() * 1000)
            share = min(1.0, seq / (ROUNDS / 3))  # arrived a third of the way through
            lat = start[0] + (home[0] - start[0]) * share
            lon = start[1] + (home[1] - start[1]) * share
            tag = {"v": 1, "seq": seq, "ts": now, "lat": home[0], "lon": home[1], "acc": 6.0}
            client.publish("em/TS1/loc", json.dumps(tag), qos=1).wait_for_publish(30)
            phone = {"_type": "location", "lat": lat, "lon": lon, "acc": 8, "tst": now // 1000}
            client.publish("owntracks/victim/phone", json.dumps(phone), qos=1).wait_for_publish(30)
            time.sleep(2)
        client.loop_stop()
        client.disconnect()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_a_protected_person_walking_up_is_warned_and_kept_off_the_map(
    stack: Stack,
) -> None:
    home = offset(LIANDU_SEAT, 300, -400)
    device = {"id": "V1", "kind": "phone", "owntracks": "victim/phone"}
    protected = {
        "id": "PP1",
        "supervisee": "S1",
        "device": device,
        "distance_m": 300,
        "confirm_s": MEETING_S,
        "sms": VICTIM_PHONE,
    }
    await _load(stack, {"S1": home}, {"protected": [protected]})
    gateway = SmsGateway(free_port())
    sms = {"FENCEWATCH_SMS_URL": f"http://127.0.0.1:{gateway.port}/sms"}
    sms["FENCEWATCH_SMS_SECRET"] = SMS_SECRET
    with gateway.listening():
        stack.start_service(0, SHARDS, extra=sms)
        stack.start_service(1, SHARDS, roles="ingest")
        await shared_out(stack, {0: SHARDS // 2, 1: SHARDS // 2})
        walker = _walk_up(stack, offset(home, 2000, 1500), home)

        async def warned() -> bool:
            return bool(gateway.to(VICTIM_PHONE))

        await until(warned, "the protected person got no SMS")
        walker.join()
        [message] = gateway.to(VICTIM_PHONE)
    assert "300米" in message["text"] and "110" in message["text"]
    conn = await asyncpg.connect(stack.pg.url)
    try:
        [alert] = await conn.fetch("SELECT id, type, supervisee_id, detail FROM alerts")
        fixes = await conn.fetch("SELECT device_id, count(*) FROM fixes GROUP BY device_id")
        rejected = await conn.fetchval("SELECT count(*) FROM rejected_messages")
        timeline = await conn.fetch(
            "SELECT action, detail FROM alert_events WHERE alert_id = $1", alert["id"]
        )
    finally:
        await conn.close()
    assert (alert["type"], alert["supervisee_id"]) == ("protected_proximity", "S1")
    detail = json.loads(alert["detail"])
    # Where they were: in the alert's evidence, its only copy.
    assert detail["protected"]["device"] == "V1" and detail["apart_m"] < 300
    assert VICTIM_PHONE not in json.dumps(detail)
    # Their fixes were taken (none rejected) but are no supervision fixes, nor on the map.
    assert [(r["device_id"]) for r in fixes] == ["TS1"] and rejected == 0
    redis = Redis.from_url(stack.redis_url)
    try:
        latest = {k.decode(): json.loads(v) for k, v in redis.hgetall(LATEST).items()}
    finally:
        redis.close()
    assert list(latest) == ["S1"] and latest["S1"]["device"] == "TS1"
    # The timeline says the protected person was warned, never their number.
    assert "warned" in [e["action"] for e in timeline]
    assert VICTIM_PHONE not in json.dumps([json.loads(e["detail"]) for e in timeline])
