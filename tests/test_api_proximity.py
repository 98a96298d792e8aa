"""No-contact orders and protected persons through the HTTP API, on a real PostgreSQL and
Redis: recorded, changed and ended within the caller's offices, audited, refused with the
reason, read by the engine's rules — and a protection ended leaves nothing of where the
protected person was, in PostgreSQL nor in Redis, and takes no more of their phone's
sightings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from alerts.clock import ManualClock
from alerts.escalation import Escalator
from alerts.feed import SIGHTINGS, Feed
from alerts.record import apply
from alerts.routing import Channels
from fencewatch.embedded import free_port
from geofence.engine import Engine
from geofence.model import DeviceRef, Protection
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from geofence.together import Together
from ingest.proximity import STATE, ProximityCheck
from storage.rules import load_rules
from tests.kit import T0, in_redis
from tests.test_api import World, _error, open_world


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    async with open_world(pg_dsn, redis_url) as opened:
        yield opened


async def _rules(world: World) -> Any:
    async with world.pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    return roster


async def _audit(world: World, prefix: str) -> list[tuple[Any, ...]]:
    rows = await world.pool.fetch(
        "SELECT actor, action, object, detail FROM audit_log WHERE action LIKE $1 ORDER BY id",
        f"{prefix}%",
    )
    return [tuple(r) for r in rows]


async def test_a_no_contact_order_is_recorded_changed_and_ended_within_ones_offices(
    world: World,
) -> None:
    url = "/api/v1/no-contact/NC1"
    order = {"people": ["P1", "P2"], "distance_m": 300, "note": "（2026）浙1102刑初12号"}
    response = await world.call("operator", "PUT", url, json=order)
    assert response.status_code == 200, response.text
    assert response.json()["people"] == ["P1", "P2"] and response.json()["confirm_s"] == 300
    assert world.changed[-1] == ["P1", "P2"]
    [rule] = (await _rules(world)).no_contact
    assert (rule.id, rule.people, rule.distance_m) == ("NC1", ("P1", "P2"), 300.0)
    listed = (await world.get("officer", "/api/v1/supervisees/P1/no-contact")).json()
    assert [o["id"] for o in listed["items"]] == ["NC1"]

    # Changed: a third person, a shorter time.
    more = {"people": ["P1", "P2", "P3"], "confirm_s": 120}
    assert (await world.call("operator", "PUT", url, json=more)).status_code == 200
    assert (await _rules(world)).no_contact[0].people == ("P1", "P2", "P3")

    bad = [
        ({"people": ["P1"]}, "people"),
        ({"people": ["P1", "P1"]}, "twice"),
        ({"people": ["P1", "NOBODY"]}, "no such supervisee 'NOBODY'"),
        ({"people": ["P1", "P2"], "distance_m": -5}, "distance_m"),
        ({"people": ["P1", "P2"], "colour": "red"}, "colour"),
    ]
    for body, reason in bad:
        assert reason in _error(
            await world.call("operator", "PUT", "/api/v1/no-contact/NC2", json=body), 422
        )
    assert "no spaces" in _error(
        await world.call("operator", "PUT", "/api/v1/no-contact/N%20C", json=order), 422
    )
    # K2's operator has only P3: P1 is as unknown to them as nobody, NC1 is not theirs.
    own = {"people": ["P3", "P1"]}
    assert "no such supervisee 'P1'" in _error(
        await world.call("operator_k2", "PUT", "/api/v1/no-contact/NC2", json=own), 422
    )
    _error(await world.call("operator_k2", "PUT", url, json={"people": ["P3", "P3x"]}), 404)
    end = {"reason": "禁止令期满"}
    _error(await world.call("operator_k2", "POST", f"{url}/end", json=end), 404)
    _error(await world.call("officer", "PUT", url, json=order), 403)
    assert (await world.get("operator_k2", "/api/v1/supervisees/P1/no-contact")).status_code == 404

    _error(await world.call("operator", "POST", f"{url}/end", json={"reason": ""}), 422)
    ended = await world.call("operator", "POST", f"{url}/end", json=end)
    assert ended.status_code == 200, ended.text
    assert (await _rules(world)).no_contact == []
    assert world.changed[-1] == ["P1", "P2", "P3"]
    _error(await world.call("operator", "POST", f"{url}/end", json=end), 404)
    audit = await _audit(world, "no_contact.")
    assert [(a[0], a[1], a[2]) for a in audit] == [
        ("operator", "no_contact.put", "no_contact:NC1"),
        ("operator", "no_contact.put", "no_contact:NC1"),
        ("operator", "no_contact.end", "no_contact:NC1"),
    ]
    assert audit[0][3]["note"] == "（2026）浙1102刑初12号" and audit[2][3]["reason"] == "禁止令期满"


async def _holding(world: World, *where: float) -> set[str]:
    """The tables with a row that, read as text, holds any of `where` (to 5 decimals)."""
    tables = await world.pool.fetch(
        "SELECT format('%I.%I', table_schema, table_name) AS t FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    found = set()
    for needle in (f"{w:.5f}" for w in where):
        for t in tables:
            query = f"SELECT count(*) FROM {t['t']} x WHERE x::text LIKE $1"
            if await world.pool.fetchval(query, f"%{needle}%"):
                found.add(t["t"])
    return found


async def _reached(check: ProximityCheck, redis: Redis) -> None:
    """Until the check has read the whole sightings stream."""
    [(last, _)] = await redis.xrevrange(SIGHTINGS, count=1)
    async with asyncio.timeout(30):
        while check.entry != last.decode():  # noqa: ASYNC110 - the check's own loop moves it
            await asyncio.sleep(0.05)


PHONE = {"id": "V1", "owntracks": "victim/phone"}
NUMBER = "+8613900000017"


async def test_a_protected_person_is_registered_and_their_phone_replaced(world: World) -> None:
    url = "/api/v1/protected/PP1"
    body = {"supervisee": "P1", "name": "王女士", "device": PHONE, "distance_m": 800, "sms": NUMBER}
    response = await world.call("operator", "PUT", url, json=body)
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["name"] == "王女士"
    assert shown["device"] == "V1" and shown["owntracks"] == "victim/phone"
    assert shown["sms"] == "**********0017"  # their number is not shown again
    [p] = (await _rules(world)).protected
    assert (p.supervisee, p.device.owntracks, p.distance_m, p.sms) == (
        "P1",
        "victim/phone",
        800.0,
        NUMBER,
    )

    # A new phone, on Traccar Client: the registration is replaced.
    traccar = {**body, "device": {"id": "V2", "osmand": "victim-2"}}
    assert (await world.call("operator", "PUT", url, json=traccar)).status_code == 200
    [p] = (await _rules(world)).protected
    assert (p.device.id, p.device.osmand, p.device.owntracks) == ("V2", "victim-2", None)
    listed = (await world.get("officer", "/api/v1/supervisees/P1/protected")).json()["items"]
    assert [(x["id"], x["name"], x["device"]) for x in listed] == [("PP1", "王女士", "V2")]
    # The console sees the number masked: it replaces the phone keeping the number.
    kept = {k: v for k, v in traccar.items() if k != "sms"} | {"keep_sms": True}
    assert (await world.call("operator", "PUT", url, json=kept)).status_code == 200
    [p] = (await _rules(world)).protected
    assert (p.device.id, p.sms) == ("V2", NUMBER)

    cases = [
        ({**body, "device": {"id": "V3"}}, 422, "OwnTracks or by OsmAnd"),
        ({**body, "device": {**PHONE, "osmand": "x"}}, 422, "OwnTracks or by OsmAnd"),
        ({**body, "sms": "call me"}, 422, "sms"),
        ({**body, "keep_sms": True}, 422, "sms or keep_sms"),
        ({**body, "supervisee": "NOBODY"}, 422, "no such supervisee"),
        ({**body, "distance_m": 0}, 422, "distance_m"),
        # A supervisee's tag: its fixes would be taken for the protected person's.
        ({**body, "device": {"id": "T-P2", "owntracks": "x/y"}}, 409, "supervisee's device"),
    ]
    for case, status, reason in cases:
        assert reason in _error(
            await world.call("operator", "PUT", "/api/v1/protected/PP2", json=case), status
        )
    # Another protected person's phone.
    taken = await world.call("operator", "PUT", "/api/v1/protected/PP2", json=traccar)
    assert "another protected person's" in _error(taken, 409)
    # Out of K2's offices: as if it did not exist.
    _error(await world.call("operator_k2", "PUT", url, json={**body, "supervisee": "P3"}), 404)
    _error(await world.call("operator_k2", "POST", f"{url}/end", json={"reason": "x"}), 404)
    assert (await world.get("operator_k2", "/api/v1/supervisees/P1/protected")).status_code == 404

    audit = await _audit(world, "protected.")
    assert [(a[1], a[2]) for a in audit] == [("protected.put", "protected:PP1")] * 3
    assert NUMBER not in str(audit) and "王女士" not in str(audit)
    assert audit[0][3]["sms"] is audit[2][3]["sms"] is True


async def test_ending_a_protection_leaves_nothing_of_where_they_were(world: World) -> None:
    """Ended for a reason other than the supervisee's release: the order ran out."""
    body = {"supervisee": "P1", "device": PHONE, "distance_m": 500, "sms": NUMBER}
    assert (await world.call("operator", "PUT", "/api/v1/protected/PP1", json=body)).is_success
    # A real approach: the watcher's verdict, recorded as ingest records it, the warning
    # queued as the escalator queues it, the alert read (audited) by the officer.
    lat, lon = 28.4612345, 119.9187654  # where the protected person was: found nowhere after
    protection = Protection("PP1", "P1", DeviceRef("V1", "phone", owntracks="victim/phone"))
    watcher = Together(protected=[protection])
    verdicts = []
    for k in range(8):
        ts = T0 + k * 20_000
        verdicts += watcher.see(Sighting(protection.person, "V1", lat, lon, 10.0, ts))
        verdicts += watcher.see(Sighting("P1", "T-P1", lat + 0.0005, lon + 0.0004, 10.0, ts + 1000))
    [raised] = verdicts
    async with world.pool.acquire() as conn, conn.transaction():
        [change] = await apply(conn, [raised])
    alert = change["alert"]["id"]
    await Escalator(world.pool, clock=ManualClock(), channels=Channels(sms=True)).route_new()
    shown = (await world.get("officer", f"/api/v1/alerts/{alert}")).json()
    assert shown["detail"]["protected"]["lat"] == lat

    # Live: the phone's shard appends its sightings to the stream, and the proximity check
    # reads them and saves where it last saw them.
    async with world.pool.acquire() as conn:
        roster, zones = await load_rules(conn, "Asia/Shanghai")
    shard = Engine(RuleSet(roster, zones))
    feed = Feed(world.redis)
    check = ProximityCheck(world.pool, world.redis, lambda: shard.rules)
    check.entry = "0-0"  # the stream is new: from its start
    stop = asyncio.Event()
    running = asyncio.create_task(check.run(stop))
    at = T0 + 600_000
    await feed.publish((), [], shard, [Sighting(protection.person, "V1", lat, lon, 10.0, at)])
    await _reached(check, world.redis)
    await check.save()

    assert await _holding(world, lat, lon) == {"public.alerts"}  # the one kept copy
    assert await in_redis(world.redis, lat, lon) == {SIGHTINGS, STATE}
    ended = await world.call(
        "operator", "POST", "/api/v1/protected/PP1/end", json={"reason": "禁止令期满"}
    )
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"id": "PP1", "alerts_purged": 1}
    assert world.changed[-1] == ["P1"]  # the service reloads: the phone is no longer taken
    assert (await _rules(world)).protected == []
    detail = (await world.get("officer", f"/api/v1/alerts/{alert}")).json()["detail"]
    assert "protected" not in detail and detail["protected_purged"] is True
    # Every row of every table of the database (fixes and their partitions included: the
    # archive takes its days from them), read as text: not their position.
    assert await _holding(world, lat, lon) == set()
    # Nor any key of Redis, read whole.
    assert await in_redis(world.redis, lat, lon) == set()

    # The shard and the check have not reloaded the rules yet: the phone's next sighting is
    # not taken, and the check, still holding where it last saw them, saves without it.
    later = (28.4654321, 119.9123456)
    moved = Sighting(protection.person, "V1", *later, 10.0, at + 30_000)
    await feed.publish((), [], shard, [moved])
    await check.save()
    stop.set()
    await running
    assert await in_redis(world.redis, lat, lon, *later) == set()
    assert await _holding(world, lat, lon, *later) == set()
    # Protected again (a new order): their phone's sightings are taken again.
    assert (await world.call("operator", "PUT", "/api/v1/protected/PP1", json=body)).is_success
    await feed.publish((), [], shard, [msgspec.structs.replace(moved, ts=at + 60_000)])
    assert await in_redis(world.redis, *later) == {SIGHTINGS}
    [purge] = [a for a in await _audit(world, "protected.purge")]
    assert purge[2] == "protected:PP1" and purge[3] == {"reason": "禁止令期满", "alerts": 1}


async def test_a_gathering_is_seen_by_every_office_with_one_of_its_people(world: World) -> None:
    across = world.alerts["P1"]
    within = world.alerts["P2"]
    for alert, people in ((across, ["P1", "P3"]), (within, ["P1", "P2"])):
        await world.pool.execute(
            "UPDATE alerts SET type = 'gathering', detail = jsonb_build_object('people', $2::jsonb)"
            " WHERE id = $1",
            alert,
            people,
        )
    # K2 has P3 only: the gathering with P3 in it, not the one of K1's two.
    seen = (await world.get("operator_k2", "/api/v1/alerts?type=gathering")).json()["items"]
    assert [a["id"] for a in seen] == [across]
    assert (await world.get("operator_k2", f"/api/v1/alerts/{across}")).status_code == 200
    assert (await world.get("operator_k2", f"/api/v1/alerts/{within}")).status_code == 404
    mine = (await world.get("operator_k2", "/api/v1/alerts?supervisee=P3")).json()["items"]
    assert across in [a["id"] for a in mine]
    # S1's officer has P1 in both.
    theirs = (await world.get("officer", "/api/v1/alerts?type=gathering")).json()["items"]
    assert sorted(a["id"] for a in theirs) == sorted([across, within])
    # …and so does the live feed of the console (the officer's queue fills from it).
    from api.console import _scoped

    message = msgspec.json.encode(
        {
            "kind": "alert",
            "alert": {"type": "gathering", "supervisee": "P1", "detail": {"people": ["P1", "P3"]}},
        }
    )
    assert _scoped(message, frozenset({"P3"})) is not None
    assert _scoped(message, frozenset({"P2"})) is None


async def test_with_redis_unreachable_a_protection_is_not_ended(pg_dsn: str) -> None:
    """Where they were might stay in Redis: the end is refused, to be tried again."""
    async with open_world(pg_dsn, f"redis://127.0.0.1:{free_port()}/0") as world:
        await world.pool.execute(
            "INSERT INTO protected_persons (id, supervisee_id, device_id, owntracks)"
            " VALUES ('PP1', 'P1', 'V1', 'victim/phone')"
        )
        body = {"supervisee": "P1", "device": {"id": "V2", "owntracks": "victim/2"}}
        changed = await world.call("operator", "PUT", "/api/v1/protected/PP1", json=body)
        assert "Redis unreachable" in _error(changed, 503)  # nothing judges them without it
        ended = await world.call(
            "operator", "POST", "/api/v1/protected/PP1/end", json={"reason": "禁止令期满"}
        )
        assert "Redis unreachable" in _error(ended, 503)
        assert [(p.id, p.device.id) for p in (await _rules(world)).protected] == [("PP1", "V1")]
        assert await _audit(world, "protected.purge") == []
