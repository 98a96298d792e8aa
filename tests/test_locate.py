"""Locate now (立即定位) at the API and at commit, on the real PostgreSQL: what is asked of
which device, which fix counts as the answer, and what a caller may not do. (The whole
round trip over the live broker with simulated devices: tests/test_locate_live.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from geofence.judge import Judged
from geofence.model import DeviceRef, Fix
from geofence.policy import Policy
from ingest.writer import commit
from storage.repo import people as people_repo
from tests.test_api import World, open_world

POINT = (28.4517, 119.9127)


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    """P1 wears tag T-P1 (test_api's seed) and a phone on HTTP; P2 and P3 a tag each."""
    async with open_world(pg_dsn, redis_url) as opened:
        async with opened.pool.acquire() as conn:
            await people_repo.upsert_device(conn, DeviceRef("PH-P1", "phone", osmand="ph1"))
            await people_repo.assign_device(conn, "PH-P1", "P1")
        yield opened


async def report(world: World, device: str, seq: int, ago_s: float = 0.0) -> None:
    """Commit one fix from `device`, taken `ago_s` before now, as ingest does."""
    now = int(time.time() * 1000)
    fix = Fix(device, seq, now - int(ago_s * 1000), now, POINT[0], POINT[1], acc=12.0)
    async with world.pool.acquire() as conn:
        await commit(conn, [Judged(fix, "P1", Policy(), 0, 12.0)], [], {}, [], [])


async def locate(world: World, who: str = "operator", person: str = "P1", **body: Any) -> Any:
    return await world.call(who, "POST", f"/api/v1/supervisees/{person}/locate", json=body)


async def test_each_device_is_asked_its_own_way_and_the_osmand_phone_is_said_to_have_no_downlink(
    world: World,
) -> None:
    r = await locate(world, alert=world.alerts["P1"])
    assert r.status_code == 202, r.text
    devices = {d["device"]: d for d in r.json()["devices"]}
    assert devices["T-P1"]["asked"] and devices["T-P1"]["via"] == "downlink"
    assert devices["T-P1"]["command_status"] == "queued"
    assert not devices["PH-P1"]["asked"] and "OsmAnd" in devices["PH-P1"]["note"]
    # The tag's command is the spec 4.1 downlink with type locate, filed under the alert.
    wire = await world.pool.fetchval(
        "SELECT payload->'command' FROM outbox WHERE channel = 'downlink'"
    )
    assert wire["type"] == "locate" and wire["id"] == devices["T-P1"]["command"]
    commands = await world.get("operator", f"/api/v1/alerts/{world.alerts['P1']}/commands")
    assert [c["type"] for c in commands.json()["items"]] == ["locate"]


async def test_the_next_fresh_fix_is_the_answer_and_an_old_upload_is_not(world: World) -> None:
    alert = world.alerts["P1"]
    request = (await locate(world, alert=alert)).json()
    url = f"/api/v1/supervisees/P1/locate/{request['id']}"
    await report(world, "T-P1", 1, ago_s=1800)  # a buffered fix from half an hour ago
    got = (await world.get("operator", url)).json()["devices"]
    assert {d["device"]: d["answer"] for d in got} == {"T-P1": None, "PH-P1": None}

    await report(world, "T-P1", 2)
    await report(world, "PH-P1", 1)  # not asked, but its next report answers all the same
    await report(world, "T-P1", 3)  # later fixes leave the answer as it was
    got = (await world.get("operator", url)).json()["devices"]
    answers = {d["device"]: d["answer"] for d in got}
    assert answers["T-P1"] and answers["PH-P1"]
    assert (answers["T-P1"]["lat"], answers["T-P1"]["lon"], answers["T-P1"]["acc"]) == (
        *POINT,
        12.0,
    )
    stored = await world.pool.fetchval("SELECT fix_ts FROM locate_devices WHERE device_id = 'T-P1'")
    second = await world.pool.fetchval("SELECT ts FROM fixes WHERE device_id = 'T-P1' AND seq = 2")
    assert stored == second

    timeline = (await world.get("operator", f"/api/v1/alerts/{alert}")).json()["timeline"]
    steps = [(e["action"], e["detail"].get("device")) for e in timeline]
    assert steps.count(("locate", None)) == 1
    assert sorted(d for a, d in steps if a == "located") == ["PH-P1", "T-P1"]
    listed = (await world.get("operator", "/api/v1/supervisees/P1/locate")).json()["items"]
    assert [r["id"] for r in listed] == [request["id"]]


async def test_what_a_caller_may_not_ask(world: World) -> None:
    assert (await locate(world, alert=world.alerts["P2"])).status_code == 409  # P2's alert
    assert (await locate(world, alert=2**40)).status_code == 404
    assert (await locate(world, "auditor")).status_code == 403  # reads, does not act
    assert (await locate(world, "officer", "P3")).status_code == 404  # another office's
    assert (await locate(world, extra=1)).status_code == 422
    await world.pool.execute(
        "UPDATE device_assignments SET until = now() WHERE supervisee_id = 'P2'"
    )
    r = await locate(world, person="P2")
    assert r.status_code == 409 and "no device" in r.json()["error"]
    assert await world.pool.fetchval("SELECT count(*) FROM locate_requests") == 0
