"""Issue 15.1 over the whole service (real Mosquitto, PostgreSQL, Redis): a breach resolved
while the person is still inside an exclusion zone does not vanish. The alert stays active
(仍在越界) and the map keeps the person in breach while the tag still reports from inside;
no second alert is raised; the person leaving ends it; coming back within minutes reopens
the same alert as a case to work again, and the officer is told again."""

from __future__ import annotations

import time
from typing import Any

from tests.kit import LIANDU, LIANDU_SEAT, line, lishui_collection, offset
from tests.live import Live, eventually, running

SCHOOL = offset(LIANDU_SEAT, 0, 2500)
STREET = offset(SCHOOL, 0, -800)  # outside the school's 300 m circle


def zones() -> dict[str, Any]:
    doc = lishui_collection()
    school = {
        "type": "Feature",
        "properties": {"id": "X1", "kind": "exclusion", "name": "某小学", "radius": 300},
        "geometry": {"type": "Point", "coordinates": [SCHOOL[1], SCHOOL[0]]},
    }
    return {**doc, "features": [*doc["features"], school]}


ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [{"id": "S1", "jurisdiction": [LIANDU], "exclusion": ["X1"], "devices": ["T1"]}],
}


class Walk:
    """One tag's fixes, 10 s apart on one clock starting a little in the past, so every
    leg is live (not late) and later than the last."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.ts = int(time.time() * 1000) - 100_000
        self.seq = 0
        self.sent = 0

    async def go(self, start: tuple[float, float], end: tuple[float, float], n: int) -> None:
        for f in line(start, end, n, t0=self.ts, interval_s=10, seq0=self.seq + 1):
            self.live.device.publish("em/T1/loc", {"v": 1, **f})
        self.ts += n * 10_000
        self.seq += n
        self.sent += n

        async def judged() -> bool:
            stored = await self.live.service.pool.fetchval("SELECT count(*) FROM fixes")
            return self.live.service.backlog == 0 and stored == self.sent

        await eventually(judged, "fixes not judged")


async def exclusion_alerts(live: Live) -> list[dict[str, Any]]:
    return await live.alerts(supervisee="S1", type="exclusion_enter")


async def state_on_map(live: Live) -> str:
    r = await live.http.get("/api/v1/positions")
    r.raise_for_status()
    [position] = r.json()["items"]
    return str(position["state"])


async def test_a_breach_resolved_while_still_inside_stays_until_it_ends(
    pg_dsn, redis_url, mqtt_url
) -> None:
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        walk = Walk(live)
        await walk.go(STREET, SCHOOL, 5)
        await walk.go(SCHOOL, SCHOOL, 5)
        [alert] = await eventually(lambda: exclusion_alerts(live), "no alert")
        assert (alert["status"], alert["active"]) == ("open", True)
        url = f"/api/v1/alerts/{alert['id']}"

        # The officer, told it is still going on, closes it as drift anyway.
        body = {"disposition": "false_alarm", "note": "电话称在家", "while_active": True}
        refused = await live.http.post(f"{url}/resolve", json=body)
        assert refused.status_code == 409
        body["reason"] = "position_drift"
        resolved = await live.http.post(f"{url}/resolve", json=body)
        assert resolved.status_code == 200, resolved.text

        # The tag keeps reporting from inside the school: the alert is still there, in
        # breach (仍在越界), and the map still shows it; no second alert for the same breach.
        await walk.go(SCHOOL, SCHOOL, 3)
        [alert] = await exclusion_alerts(live)
        assert (alert["status"], alert["active"], alert["reason"]) == (
            "resolved",
            True,
            "position_drift",
        )
        still = await live.alerts(status="resolved", active="true")
        assert [a["id"] for a in still] == [alert["id"]]
        assert await state_on_map(live) == "breach"

        # The person leaves: the breach has ended and the resolved alert is done with.
        await walk.go(SCHOOL, STREET, 4)
        await walk.go(STREET, STREET, 2)
        [alert] = await exclusion_alerts(live)
        assert (alert["status"], alert["active"]) == ("resolved", False)
        assert await live.alerts(status="resolved", active="true") == []
        assert await state_on_map(live) != "breach"

        # Back in within minutes: the same breach, so the same alert — open again, its
        # false-alarm closure kept in the timeline, and the officer told again.
        await walk.go(STREET, SCHOOL, 4)
        await walk.go(SCHOOL, SCHOOL, 4)
        [alert] = await exclusion_alerts(live)
        assert (alert["status"], alert["active"], alert["disposition"]) == ("open", True, None)

        async def routed_twice() -> list[dict[str, Any]] | None:
            steps = (await live.http.get(url)).json()["timeline"]
            return steps if [s["action"] for s in steps].count("routed") == 2 else None

        steps = await eventually(routed_twice, "the reopened case was not routed again")
        actions = [s["action"] for s in steps]
        assert actions.index("resolved") < actions.index("cleared") < actions.index("reopened")
        reopened = next(s for s in steps if s["action"] == "reopened")
        assert reopened["detail"]["case_reopened"] is True
        resolved_step = next(s for s in steps if s["action"] == "resolved")
        assert resolved_step["detail"]["reason"] == "position_drift"
