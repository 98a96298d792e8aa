"""人机分离 end to end over the real Mosquitto, PostgreSQL and Redis: a person leaves the
phone at home and rides off 2 km wearing the tag. The tag reports every 30 s on its way;
the phone, still, pings home every 5–15 minutes in OwnTracks' significant-move mode. Both
are the live fleet's simulated devices, on a device clock running RATE times faster than
the wall, during a heightened period that confirms a separation after 5 minutes instead
of 20 (a period may only make the rules stricter). The service raises one
`device_separation` naming the phone, explained in its detail."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from simulators.device import DevicePlan, FleetPlan
from simulators.fleet import DeviceClock, run_fleet
from simulators.gps import GpsProfile
from simulators.life import PHONE_GPS
from simulators.route import Env, Track
from storage.repo import orders as orders_repo
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection, offset
from tests.live import eventually, running

RATE = 40.0
# Ingest takes fixes up to 10 minutes ahead of the wall: the device clock starts 20 minutes
# behind it and the fleet stops after 30 minutes of device time (46 s of wall time).
BEHIND_MS = 20 * 60_000
SPAN_MS = 30 * 60_000
AWAY = offset(LIANDU_SEAT, 2000, 0)


ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "P1",
            "jurisdiction": [LIANDU],
            "devices": ["T1", {"id": "PH1", "kind": "phone", "owntracks": "p1/ph1"}],
        }
    ],
}


async def festival(pool: asyncpg.Pool) -> None:
    """A heightened period in force, as a supervisor records it (PUT /heightened/{id})."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        await orders_repo.put_heightened(
            conn,
            "festival",
            name="重大节日",
            starts=now - timedelta(days=1),
            ends=now + timedelta(days=1),
            policy={"separation_s": 300},
            offices=(),
            updated_by="test",
        )


def track(*knots: tuple[float, tuple[float, float]], env: Env) -> Track:
    return Track(
        np.array([int(t * 1000) for t, _ in knots], dtype=np.int64),
        np.array([p[0] for _, p in knots]),
        np.array([p[1] for _, p in knots]),
        np.full(len(knots), int(env), dtype=np.int8),
    )


async def test_a_tag_travelling_without_its_phone_raises_device_separation(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    home = LIANDU_SEAT
    # A minute at home, six and a half minutes on an e-bike, then there for good.
    ride = track((0, home), (60, home), (460, AWAY), (3600, AWAY), env=Env.OUTDOOR)
    at_home = track((0, home), (3600, home), env=Env.INDOOR)
    clean = GpsProfile(multipath_per_fix=0.0, wifi_outlier_per_fix=0.0)
    phone_gps = replace(PHONE_GPS, wifi_outlier_per_fix=0.0, multipath_per_fix=0.0)
    plan = FleetPlan(
        0,
        (
            DevicePlan("T1", ride, gps=clean, seed=3),
            DevicePlan("PH1", at_home, kind="phone", owntracks="p1/ph1", gps=phone_gps, seed=4),
        ),
    )
    async with running(
        pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER, tamper=festival
    ) as live:
        start = int(time.time() * 1000) - BEHIND_MS
        clock = DeviceClock(RATE, start)
        stop = asyncio.Event()
        fleet = asyncio.create_task(run_fleet(mqtt_url, plan, stop, interval_s=30, clock=clock))

        async def separated() -> list[dict[str, Any]]:
            found = await live.alerts(supervisee="P1", type="device_separation")
            if not found and clock.now() >= start + SPAN_MS:
                stop.set()  # any later and the device clock runs too far ahead of the wall
                raise AssertionError("no device_separation within 30 minutes of device time")
            return found

        try:
            [alert] = await eventually(separated, "no device_separation")
        finally:
            stop.set()
            await fleet
        others = await live.alerts(supervisee="P1")

    assert alert["device"] == "PH1" and alert["severity"] == "high"
    d = alert["detail"]
    assert d["with_person"] == "T1" and 1500 < d["distance_m"] < 2500 and d["apart_s"] >= 300
    # The phone's position is home, the person's (the tag's) where they rode to.
    assert abs(d["lat"] - home[0]) < 0.002 and abs(d["person_lon"] - AWAY[1]) < 0.002
    assert {a["type"] for a in others} == {"device_separation"}
