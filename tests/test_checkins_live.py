"""Check-ins (定位签到) end to end over the real Mosquitto, PostgreSQL, Redis and HTTP.

P1 carries an OwnTracks phone (the live fleet's simulated one, at home and still, so silent
unless asked) and has a schedule of their own that wants a face verification; P2 follows
the normal level's schedule and their phone is switched off. At the check-in's minute the
service asks both phones (reportLocation); P1's phone answers with a fix; a forged
verification is refused and a signed one answers the check-in; P2's passes its deadline
unanswered and raises `checkin_missed`. The check-in duty runs on a controlled clock (the
minute it is due, then past the deadline); everything else is live."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from alerts.feed import CHANNEL
from alerts.signed import signed_headers
from duties.scheduler import CheckIns
from fencewatch.channels import channel
from simulators.device import DevicePlan, FleetPlan
from simulators.fleet import run_fleet
from simulators.gps import GpsProfile
from simulators.route import Env, Track
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection
from tests.live import eventually, running

SECRET = "签到-secret"
TZ = ZoneInfo("Asia/Shanghai")
ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "P1",
            "jurisdiction": [LIANDU],
            "devices": [{"id": "PH1", "kind": "phone", "owntracks": "p1/ph1"}],
        },
        {
            "id": "P2",
            "jurisdiction": [LIANDU],
            "devices": [{"id": "PH2", "kind": "phone", "owntracks": "p2/ph2"}],
        },
    ],
}


def at_home() -> Track:
    return Track(
        np.array([0, 3_600_000], dtype=np.int64),
        np.array([LIANDU_SEAT[0]] * 2),
        np.array([LIANDU_SEAT[1]] * 2),
        np.full(2, int(Env.OUTDOOR), dtype=np.int8),
    )


async def test_a_check_in_is_answered_with_a_fix_and_a_signed_verification_and_one_is_missed(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    clean = GpsProfile(multipath_per_fix=0.0, wifi_outlier_per_fix=0.0)
    plan = FleetPlan(
        0, (DevicePlan("PH1", at_home(), kind="phone", owntracks="p1/ph1", gps=clean),)
    )
    settings = {"checkin_secret": SECRET}
    async with running(
        pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER, settings=settings
    ) as live:
        pool, http = live.service.pool, live.http
        stop = asyncio.Event()
        fleet = asyncio.create_task(run_fleet(mqtt_url, plan, stop))

        async def first_fix() -> datetime | None:
            return await pool.fetchval("SELECT min(ts) FROM fixes WHERE device_id = 'PH1'")

        first = await eventually(first_fix, "the phone never reported")
        # The check-in's minute: late enough that the phone's first fix is no answer to it.
        due = first.replace(second=0, microsecond=0) + timedelta(minutes=2)
        minute = due.astimezone(TZ).strftime("%H:%M")
        level = {"times": [minute], "deadline_s": 120}
        r = await http.put("/api/v1/checkin-schedules/levels/normal", json=level)
        assert r.status_code == 200, r.text
        own = {**level, "face": True}
        r = await http.put("/api/v1/supervisees/P1/checkin-schedule", json=own)
        assert r.status_code == 200, r.text

        # Asked no earlier than a minute before the due time (the answer may be that old).
        await asyncio.sleep(max(0.0, (due - timedelta(seconds=58)).timestamp() - time.time()))
        redis = live.service.redis
        duty = CheckIns(live.service.settings, redis)
        feed = redis.pubsub()
        await feed.subscribe(channel(redis, CHANNEL))
        assert (await duty.run(pool, due))["asked"] == 2

        async def answered_by_phone() -> dict[str, Any] | None:
            await duty.run(pool, due)
            calendar = (await http.get("/api/v1/supervisees/P1/checkins")).json()
            [checkin] = calendar["items"]
            return checkin if checkin["fix"] else None

        checkin = await eventually(answered_by_phone, "the phone did not answer the check-in")
        # A good fix, but the face verification is still wanted.
        assert checkin["status"] == "pending" and checkin["sent_via"] == ["owntracks"]
        url = f"/api/v1/checkins/{checkin['id']}"
        body = msgspec.json.encode({"verdict": "pass", "app": "矫正通"})
        forged = signed_headers(body, "not-the-secret")
        assert (await http.post(url, content=body, headers=forged)).status_code == 401
        tampered = signed_headers(msgspec.json.encode({"verdict": "fail"}), SECRET)
        assert (await http.post(url, content=body, headers=tampered)).status_code == 401
        assert (await http.post(url, content=body)).status_code == 401
        r = await http.post(url, content=body, headers=signed_headers(body, SECRET))
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["face_verdict"]) == ("answered", "pass")

        # P2's phone is off: past the deadline, missed.
        settled = await duty.run(pool, due + timedelta(seconds=121))
        assert settled["missed"] == 1

        async def announced() -> dict[str, Any] | None:
            message = await feed.get_message(ignore_subscribe_messages=True, timeout=0.2)
            body = msgspec.json.decode(message["data"]) if message else {}
            return body if body.get("kind") == "alert" else None

        change = await eventually(announced, "live consoles were not told of the alert")
        await feed.aclose()
        stop.set()
        await fleet
        [alert] = await live.alerts(supervisee="P2", type="checkin_missed")
        p1 = (await http.get("/api/v1/supervisees/P1/checkins")).json()
        p2 = (await http.get("/api/v1/supervisees/P2/checkins")).json()

    assert alert["device"] == "PH2" and alert["detail"]["reason"] == "no_fix"
    assert (change["event"], change["alert"]["id"]) == ("raised", alert["id"])
    assert alert["detail"]["deadline_at"].startswith(
        (due + timedelta(seconds=120)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    )
    assert (p1["answered"], p1["missed"], p1["rate"]) == (1, 0, 1.0)
    assert (p2["answered"], p2["missed"], p2["rate"]) == (0, 1, 0.0)
    assert p2["items"][0]["alert"] == alert["id"]
