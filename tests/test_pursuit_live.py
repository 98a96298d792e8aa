"""Issue 12's pursuit end to end over the real Mosquitto, PostgreSQL and Redis: a simulated
tag reporting every 30 s walks out of 莲都区, the service tells it to report every 15 s
(set_interval), it does, it walks back in, the breach clears and the service puts it back
to 30 s. The tag is the live fleet's own (simulators.fleet), with a device clock running
RATE times faster than the wall so that twelve minutes of reporting take 18 seconds;
everything asserted is in device time (the stored fixes) or in the command records, so
nothing depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import numpy as np

from simulators.device import DevicePlan, FleetPlan
from simulators.fleet import DeviceClock, FleetStats, run_fleet
from simulators.geo import distance_m
from simulators.gps import GpsProfile
from simulators.route import Env, Track
from tests.kit import LIANDU, LIANDU_SEAT, border_crossing, lishui_collection, qingtian_point
from tests.live import eventually, running
from tests.test_pursuit import gaps, phases

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [{"id": "P1", "jurisdiction": [LIANDU], "devices": ["T1"]}],
}
RATE = 40.0
# Ingest judges a fix live while it arrives under 5 minutes after its time, and takes it up
# to 10 minutes ahead: the device clock starts 4 minutes behind the wall, and after the
# plan's 12 minutes (18 s of wall time) it is nearly 8 minutes ahead.
BEHIND_MS = 240_000


def walk_out_and_back() -> Track:
    """Waits 250 m inside the border towards 青田, walks (5 m/s) to 350 m beyond it, stays
    three minutes, walks back and stays: device seconds 0-90-210-390-510-720."""
    border = border_crossing(LIANDU_SEAT, qingtian_point(), LIANDU)
    span = float(distance_m(*LIANDU_SEAT, *border))

    def along(metres: float) -> tuple[float, float]:
        f = metres / span
        return tuple(a + (b - a) * f for a, b in zip(LIANDU_SEAT, border, strict=True))  # type: ignore[return-value]

    inside, outside = along(span - 250), along(span + 350)
    knots = [inside, inside, outside, outside, inside, inside]
    return Track(
        np.array([0, 90, 210, 390, 510, 720], dtype=np.int64) * 1000,
        np.array([k[0] for k in knots]),
        np.array([k[1] for k in knots]),
        np.full(len(knots), int(Env.OUTDOOR), dtype=np.int8),
    )


async def test_a_tag_walking_out_reports_every_15_s_until_it_is_back(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    track = walk_out_and_back()
    # Outdoors with no multipath: nothing but the walk makes the breach or ends it.
    clean = GpsProfile(multipath_per_fix=0.0, wifi_outlier_per_fix=0.0)
    plan = FleetPlan(0, (DevicePlan("T1", track, gps=clean, seed=7),))
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        pool = live.service.pool
        # The restore waits FENCEWATCH_PURSUIT_HOLD_S of wall time after the breach ends
        # (5 minutes); the device clock runs fast, so here it does not wait.
        assert live.service.alerting is not None
        live.service.alerting.escalator.pursuit_hold = timedelta(0)
        start = int(time.time() * 1000) - BEHIND_MS
        clock = DeviceClock(RATE, start)
        stop, stats = asyncio.Event(), FleetStats()
        fleet = asyncio.create_task(
            run_fleet(mqtt_url, plan, stop, interval_s=30, stats=stats, clock=clock)
        )

        async def walked() -> bool:
            return clock.now() >= start + track.end

        await eventually(walked, "the fleet's clock stopped")
        stop.set()
        await fleet

        async def all_stored() -> bool:
            stored = await pool.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'T1'")
            return stored >= stats.published and live.service.backlog == 0

        await eventually(all_stored, "the tag's fixes were not all stored")
        times = [
            r["ms"]
            for r in await pool.fetch(
                "SELECT (extract(epoch FROM ts) * 1000)::bigint AS ms FROM fixes"
                " WHERE device_id = 'T1' ORDER BY ts"
            )
        ]
        commands = await pool.fetch(
            "SELECT type, interval_s, broker_acked_at, device_acked_at FROM device_commands"
            " WHERE issued_by = 'pursuit' ORDER BY created_at"
        )
        alerts = await live.alerts(supervisee="P1", type="jurisdiction_exit")

    assert stats.held == 0 and stats.dropped == 0
    # 30 s inside, 15 s from the service's set_interval 15 on, 30 s again after it restored.
    [(slow, before), (fast, during), (slow_again, after)] = phases(gaps(times))
    assert (slow, fast, slow_again) == (30, 15, 30)
    assert before >= 3 and during >= 8 and after >= 3
    assert [(c["type"], c["interval_s"]) for c in commands] == [
        ("set_interval", 15),
        ("set_interval", 30),
    ]
    assert all(c["broker_acked_at"] and c["device_acked_at"] for c in commands)
    # The breach itself: one alert, live, cleared when the tag came back.
    assert len(alerts) == 1 and alerts[0]["late"] is False and alerts[0]["active"] is False
