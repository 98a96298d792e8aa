"""Check-ins (定位签到) below the live round trip (tests/test_checkins_live.py): when they
fall due, why one is missed, and what the API refuses — on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from geofence.judge import Judged
from geofence.model import DeviceRef, Fix
from geofence.policy import Policy
from ingest.writer import commit
from storage.repo import people as people_repo
from supervision import checkins
from supervision.checkin_rules import Schedule, day_plan
from tests.test_api import World, open_world
from tests.test_stillness import NOW, days

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 12, 7)


def test_fixed_and_random_minutes_of_a_day() -> None:
    schedule = Schedule(times=("09:00", "21:30"), random_per_day=3)
    plan = day_plan("P1", DAY, schedule, TZ, "s")
    assert [t.strftime("%H:%M") for t, k in plan if k == "fixed"] == ["09:00", "21:30"]
    drawn = [t for t, k in plan if k == "random"]
    assert len(drawn) == 3 and all(8 <= t.hour < 21 for t in drawn)
    assert list(plan) == sorted(plan) and plan == day_plan("P1", DAY, schedule, TZ, "s")
    # A heightened period doubles the random ones, keeping the usual ones among them.
    more = day_plan("P1", DAY, schedule, TZ, "s", heightened=True)
    assert len(more) == 2 + 6 and set(plan) <= set(more)
    # Another day, another person or another secret: other minutes, not to be foreseen.
    for other in (
        day_plan("P1", DAY + timedelta(days=1), schedule, TZ, "s"),
        day_plan("P2", DAY, schedule, TZ, "s"),
        day_plan("P1", DAY, schedule, TZ, "t"),
    ):
        assert [t.time() for t, k in other if k == "random"] != [t.time() for t in drawn]


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    """test_api's world; P1 also carries phone PH-P1."""
    async with open_world(pg_dsn, redis_url) as opened:
        async with opened.pool.acquire() as conn:
            await people_repo.upsert_device(conn, DeviceRef("PH-P1", "phone", owntracks="p1/ph"))
            await people_repo.assign_device(conn, "PH-P1", "P1")
        yield opened


async def checkin(world: World, due: datetime, face: bool = False) -> int:
    return int(
        await world.pool.fetchval(
            "INSERT INTO checkins (supervisee_id, due_at, deadline_at, kind, face)"
            " VALUES ('P1', $1, $2, 'fixed', $3) RETURNING id",
            due,
            due + timedelta(minutes=15),
            face,
        )
    )


async def report(world: World, device: str, at: datetime, acc: float) -> None:
    ms = int(at.timestamp() * 1000)
    fix = Fix(device, ms // 1000, ms, ms, 28.4517, 119.9127, acc=acc)
    async with world.pool.acquire() as conn:
        await commit(conn, [Judged(fix, "P1", Policy(), 0, acc * 2)], [], {}, [], [])


async def settle(world: World, now: datetime) -> None:
    async with world.pool.acquire() as conn, conn.transaction():
        await checkins.settle(conn, now, TZ)


async def status(world: World, checkin_id: int) -> tuple[str, str | None]:
    row = await world.pool.fetchrow("SELECT status, reason FROM checkins WHERE id = $1", checkin_id)
    assert row is not None
    return row["status"], row["reason"]


async def test_why_a_check_in_is_missed(world: World) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    poor, tag_only, no_face, answered, face_failed = [
        await checkin(world, at(20 * i), face=i in (2, 4)) for i in range(5)
    ]
    await report(world, "PH-P1", at(0.5), acc=600.0)  # a network fix, too coarse
    await report(world, "T-P1", at(21), acc=5.0)  # the tag: not the phone
    await report(world, "PH-P1", at(41), acc=10.0)  # good, but no verification comes
    await report(world, "PH-P1", at(61), acc=10.0)
    await report(world, "PH-P1", at(81), acc=10.0)
    await world.pool.execute("UPDATE checkins SET face_verdict = 'fail' WHERE id = $1", face_failed)
    await settle(world, at(82))  # before the last one's deadline
    assert [await status(world, c) for c in (poor, tag_only, no_face, answered)] == [
        ("missed", "poor_fix"),
        ("missed", "no_fix"),
        ("missed", "no_face"),
        ("answered", None),
    ]
    assert await status(world, face_failed) == ("missed", "face_failed")
    alerts = await world.pool.fetch(
        "SELECT device_id, detail->>'reason' AS reason FROM alerts WHERE type = 'checkin_missed'"
        " ORDER BY id"
    )
    assert [(a["device_id"], a["reason"]) for a in alerts] == [
        ("PH-P1", "poor_fix"),
        ("PH-P1", "no_fix"),
        ("PH-P1", "no_face"),
        ("PH-P1", "face_failed"),
    ]


async def test_what_the_api_refuses(world: World) -> None:
    url = "/api/v1/supervisees/P1/checkin-schedule"
    bad = [{"times": ["9h"]}, {"waking_from": "21:00", "waking_to": "08:00"}, {"deadline_s": 5}]
    for body in bad:
        assert (await world.call("operator", "PUT", url, json=body)).status_code == 422
    assert (await world.call("auditor", "PUT", url, json={})).status_code == 403
    assert (await world.call("officer", "PUT", url.replace("P1", "P3"), json={})).status_code == 404
    assert (await world.get("operator", url)).status_code == 404  # follows the level's
    level = "/api/v1/checkin-schedules/levels/normal"
    assert (await world.call("officer", "PUT", level, json={})).status_code == 403
    # No secret configured: no verification can be trusted.
    due = datetime.now(UTC) - timedelta(minutes=1)
    r = await world.client.post(f"/api/v1/checkins/{await checkin(world, due)}", json={})
    assert r.status_code == 401 and "not configured" in r.json()["error"]


async def test_due_check_ins_go_to_the_phone_and_by_sms_once(world: World) -> None:
    await world.pool.execute("UPDATE supervisees SET phone = '13900000001' WHERE id = 'P1'")
    body = {"times": ["09:00"], "deadline_s": 600, "face": True}
    r = await world.call("operator", "PUT", "/api/v1/supervisees/P1/checkin-schedule", json=body)
    assert r.status_code == 200, r.text
    due = datetime(2026, 12, 7, 9, 0, tzinfo=TZ)
    for now in (due - timedelta(minutes=1), due, due + timedelta(minutes=5)):
        async with world.pool.acquire() as conn, conn.transaction():
            asked = await checkins.issue_due(conn, now, TZ, "s", sms=True)
        assert asked == (1 if now == due else 0)  # not before it is due, and only once
    sent = await world.pool.fetch("SELECT channel, recipient, payload FROM outbox ORDER BY id")
    assert [(s["channel"], s["recipient"]) for s in sent] == [
        ("downlink", "PH-P1"),
        ("sms", "13900000001"),
    ]
    assert sent[0]["payload"]["wire"] == {"_type": "cmd", "action": "reportLocation"}
    assert "09:10" in sent[1]["payload"]["text"] and "人脸" in sent[1]["payload"]["text"]
    [made] = await world.pool.fetch("SELECT * FROM checkins")
    assert (made["kind"], made["face"], list(made["sent_via"])) == (
        "fixed",
        True,
        ["owntracks", "sms"],
    )
    # Only P1 carries a phone: the others, on no schedule, are never asked.
    assert made["supervisee_id"] == "P1"


async def test_a_missed_check_in_says_when_the_phone_has_been_unusually_still(
    world: World,
) -> None:
    await world.call(
        "operator", "PUT", "/api/v1/supervisees/P1/checkin-schedule", json={"times": ["13:40"]}
    )
    judged = [
        Judged(
            Fix(
                "PH-P1", n, int(t.timestamp() * 1000), int(t.timestamp() * 1000), lat, lon, acc=acc
            ),
            "P1",
            Policy(),
            0,
            30.0,
        )
        for n, (t, lat, lon, acc) in enumerate(days(2, today_still=True))
    ]
    async with world.pool.acquire() as conn:
        await commit(conn, judged, [], {}, [], [])
    # The phone's fixes go on (from home), but the face verification never comes: missed,
    # and the alert notes the phone has sat still since midnight when, on every day of
    # the past week, it moved every two hours.
    due = NOW - timedelta(minutes=20)
    missed = await checkin(world, due, face=True)
    await settle(world, NOW)
    assert await status(world, missed) == ("missed", "no_face")
    detail = await world.pool.fetchval("SELECT detail FROM alerts WHERE type = 'checkin_missed'")
    assert detail["stationary"]["device"] == "PH-P1"
    assert detail["stationary"]["still_s"] >= 5 * 3600


async def test_a_heightened_period_doubles_the_random_check_ins(world: World) -> None:
    body = {"random_per_day": 6, "waking_from": "08:00", "waking_to": "09:00"}
    await world.call("operator", "PUT", "/api/v1/supervisees/P1/checkin-schedule", json=body)
    counts = []
    for day, heightened in ((date(2026, 12, 1), False), (date(2026, 12, 2), True)):
        start = datetime.combine(day, datetime.min.time(), TZ)
        if heightened:
            await world.pool.execute(
                "INSERT INTO heightened_periods (id, name, starts_at, ends_at, policy, offices)"
                " VALUES ('h', '重大节日', $1, $2, '{}', '{}')",
                start,
                start + timedelta(days=1),
            )
        asked = 0
        for minute in range(8 * 60, 9 * 60 + 1, 10):
            async with world.pool.acquire() as conn, conn.transaction():
                now = start + timedelta(minutes=minute)
                asked += await checkins.issue_due(conn, now, TZ, "s", sms=False)
        counts.append(asked)
    assert counts == [6, 12]
