"""Locate now (立即定位) end to end over the real Mosquitto, PostgreSQL and Redis: a person
wearing a tag, an OwnTracks phone and a phone on HTTP (OsmAnd) presses SOS; the operator
asks from the alert for a fix now. The tag (reporting only hourly) and the phone (standing
still, so silent for minutes) are the live fleet's own simulated devices: each answers at
once, the answers land in the request and in the alert's timeline, and the OsmAnd phone
is said to have no downlink."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import numpy as np

from alerts.locate import ANSWER_SLACK
from simulators.device import DevicePlan, FleetPlan
from simulators.fleet import FleetStats, run_fleet
from simulators.gps import GpsProfile
from simulators.route import Env, Track
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection
from tests.live import eventually, running

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "P1",
            "jurisdiction": [LIANDU],
            "devices": [
                "T1",
                {"id": "PH1", "kind": "phone", "owntracks": "p1/ph1"},
                {"id": "PH2", "kind": "phone", "osmand": "p1-traccar"},
            ],
        }
    ],
}


def staying_home() -> Track:
    """An hour at one spot in 莲都区."""
    return Track(
        np.array([0, 3_600_000], dtype=np.int64),
        np.array([LIANDU_SEAT[0]] * 2),
        np.array([LIANDU_SEAT[1]] * 2),
        np.full(2, int(Env.OUTDOOR), dtype=np.int8),
    )


async def test_locate_now_from_an_alert_returns_each_devices_fix_into_the_case_record(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    clean = GpsProfile(multipath_per_fix=0.0, wifi_outlier_per_fix=0.0)
    plan = FleetPlan(
        0,
        (
            DevicePlan("T1", staying_home(), gps=clean, seed=1),
            DevicePlan("PH1", staying_home(), kind="phone", owntracks="p1/ph1", gps=clean, seed=2),
        ),
    )
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        pool = live.service.pool
        stop, stats = asyncio.Event(), FleetStats()
        # Tags report hourly: only the first fix comes unasked within the test.
        fleet = asyncio.create_task(run_fleet(mqtt_url, plan, stop, interval_s=3600, stats=stats))

        async def fixes() -> dict[str, int]:
            rows = await pool.fetch("SELECT device_id, count(*) AS n FROM fixes GROUP BY 1")
            return {r["device_id"]: r["n"] for r in rows}

        async def both_reported() -> bool:
            return (await fixes()).keys() >= {"T1", "PH1"}

        await eventually(both_reported, "the tag and the phone never reported")
        before = await fixes()
        now = int(time.time() * 1000)
        live.device.publish("em/T1/evt", {"v": 1, "seq": 1_000_000, "ts": now, "type": "sos"})

        async def sos() -> list[dict[str, Any]]:
            return await live.alerts(supervisee="P1", type="sos")

        [alert] = await eventually(sos, "the SOS raised no alert")
        r = await live.http.post("/api/v1/supervisees/P1/locate", json={"alert": alert["id"]})
        assert r.status_code == 202, r.text
        asked = r.json()
        devices = {d["device"]: d for d in asked["devices"]}
        assert {k: (d["asked"], d["via"]) for k, d in devices.items()} == {
            "T1": (True, "downlink"),
            "PH1": (True, "owntracks"),
            "PH2": (False, None),
        }
        assert "OsmAnd" in devices["PH2"]["note"] and all(
            d["answer"] is None for d in devices.values()
        )

        async def answered() -> dict[str, Any] | None:
            got = await live.http.get(f"/api/v1/supervisees/P1/locate/{asked['id']}")
            request = got.json()
            done = {d["device"] for d in request["devices"] if d["answer"]}
            return request if done >= {"T1", "PH1"} else None

        request = await eventually(answered, "locate-now got no answer")
        timeline = (await live.http.get(f"/api/v1/alerts/{alert['id']}")).json()["timeline"]
        after = await fixes()
        stop.set()
        await fleet

    answers = {d["device"]: d["answer"] for d in request["devices"]}
    assert answers["PH2"] is None  # never asked, and it has not reported
    for device in ("T1", "PH1"):
        # A fix each device sent because it was asked: unasked, neither would have reported.
        assert after[device] == before[device] + 1
        asked_at = datetime.fromisoformat(asked["requested_at"])
        assert datetime.fromisoformat(answers[device]["ts"]) >= asked_at - ANSWER_SLACK
        assert abs(answers[device]["lat"] - LIANDU_SEAT[0]) < 0.001
    actions = [(e["action"], e["detail"].get("device")) for e in timeline]
    assert ("locate", None) in actions
    assert {d for a, d in actions if a == "located"} == {"T1", "PH1"}
    # The tag acknowledged its command, as it does every spec 4.1 command.
    assert devices["T1"]["command"] in {
        e["detail"].get("command") for e in timeline if e["action"] == "notified"
    }
