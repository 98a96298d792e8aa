"""The supervision rules through the HTTP API, on a real PostgreSQL and Redis: who may
approve which leave, recurring permits, overdue leave, monitoring orders and the tags they
allow, heightened periods — and that what is approved reaches the engine's rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.feed import SIGHTINGS, Feed
from fencewatch.timefmt import epoch_ms
from geofence.engine import Engine
from geofence.model import Heightened
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from geofence.zones import parse_schedule
from storage.rules import load_rules
from tests.kit import in_redis
from tests.test_api import TOKENS, World, _error, open_world

# centre C ─┬─ city M ─── county K1 ─┬─ station S1 (P1)
#           │                        └─ station S2 (P2)
#           └─ county K2 ─── station S3 (P3)
CITY = (("M", "丽水市社区矫正管理局", "city", "C"), ("K1", "莲都区司法局", "county", "M"))
WHO = {
    **TOKENS,
    "station": ("officer", "S1"),
    "county": ("supervisor", "K1"),
    "county_officer": ("officer", "K1"),
    "city": ("supervisor", "M"),
    "centre": ("supervisor", "C"),
    "k2": ("supervisor", "K2"),
}
SCHEDULE = [{"days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:30"}]
# Heightened periods next year, so that they are still loaded whenever the test runs.
YEAR = datetime.now(UTC).year + 1
LOCAL = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    async with open_world(pg_dsn, redis_url, WHO, CITY) as opened:
        yield opened


def _day(days: float) -> datetime:
    """Midnight (UTC) `days` from today."""
    today = datetime.now(UTC).date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=days)


def _leave(start: float, days: float, **extra: Any) -> dict[str, Any]:
    return {
        "from": _day(start).isoformat(),
        "to": _day(start + days).isoformat(),
        "destinations": ["J2"],
        **extra,
    }


async def _apply(world: World, who: str, body: dict[str, Any], person: str = "P1") -> Any:
    return await world.call(who, "POST", f"/api/v1/supervisees/{person}/leaves", json=body)


async def _engine_leaves(world: World, person: str) -> list[Any]:
    async with world.pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    return [lv for p in roster.supervisees if p.id == person for lv in p.leaves]


# --- who approves what -------------------------------------------------------------------


async def test_a_station_approves_a_week_and_the_county_ten_days(world: World) -> None:
    week = await _apply(world, "station", _leave(10, 7, approve=True, reason="探亲"))
    assert week.status_code == 201, week.text
    body = week.json()
    assert (body["status"], body["level"], body["level_zh"], body["days"]) == (
        "approved",
        "station",
        "司法所",
        7,
    )
    assert (body["applied_by"], body["approved_by"], body["warnings"]) == ("station", "station", [])
    assert world.changed == [["P1"]]

    # Asked to approve ten days at once, the station is refused and nothing is recorded.
    before = await world.pool.fetchval("SELECT count(*) FROM leaves")
    ten = _leave(20, 10)
    message = _error(await _apply(world, "station", {**ten, "approve": True}), 403)
    assert "外出10天，须由县级社区矫正机构批准" in message
    assert "10 days of leave must be approved by the county level" in message
    assert await world.pool.fetchval("SELECT count(*) FROM leaves") == before

    # Applied for, it waits for the county: the engine does not see it.
    applied = await _apply(world, "station", ten)
    assert applied.status_code == 201, applied.text
    leave = applied.json()
    assert (leave["status"], leave["level"], leave["level_zh"], leave["approved_by"]) == (
        "requested",
        "county",
        "县级社区矫正机构",
        None,
    )
    assert world.changed == [["P1"]]
    assert [lv.id for lv in await _engine_leaves(world, "P1")] == [body["id"]]
    queue = (await world.get("county", "/api/v1/leaves?status=requested")).json()["items"]
    assert [x["id"] for x in queue] == [leave["id"]]

    url = f"/api/v1/leaves/{leave['id']}"
    refused = await world.call("station", "POST", f"{url}/approve")
    assert "外出10天，须由县级社区矫正机构批准" in _error(refused, 403)
    assert refused.json()["detail"]["refusals"][0]["code"] == "approver_level"
    # K2's supervisor is county level too, but P1 is not theirs.
    _error(await world.call("k2", "POST", f"{url}/approve"), 404)
    # The centre is above everyone but decides nothing.
    assert "县级社区矫正机构" in _error(await world.call("centre", "POST", f"{url}/approve"), 403)

    approved = await world.call("county", "POST", f"{url}/approve", json={"note": "同意"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["approved_by"]) == ("approved", "county")
    assert approved.json()["decided_at"] is not None
    assert world.changed == [["P1"], ["P1"]]
    assert "is approved" in _error(await world.call("city", "POST", f"{url}/approve"), 409)

    engine = {lv.id: lv for lv in await _engine_leaves(world, "P1")}
    assert set(engine) == {body["id"], leave["id"]}
    assert (engine[leave["id"]].start, engine[leave["id"]].destinations) == (
        epoch_ms(_day(20)),
        ("J2",),
    )
    audit = await world.pool.fetch(
        "SELECT actor, action FROM audit_log WHERE object = $1 ORDER BY id", f"leave:{leave['id']}"
    )
    assert [tuple(r) for r in audit] == [("station", "leave.apply"), ("county", "leave.approve")]


async def test_over_thirty_days_in_two_months_goes_to_the_city(world: World) -> None:
    first = await _apply(world, "county", _leave(10, 25, approve=True))
    assert first.status_code == 201, first.text
    assert first.json()["level"] == "county"

    second = await _apply(world, "station", _leave(40, 10))
    assert second.status_code == 201, second.text
    leave = second.json()
    assert (leave["level"], leave["level_zh"]) == ("city", "市级社区矫正机构")
    [warning] = leave["warnings"]
    assert warning["code"] == "window_total"
    assert "两个月内累计外出35天" in warning["message_zh"]

    url = f"/api/v1/leaves/{leave['id']}/approve"
    assert "外出10天，须由市级社区矫正机构批准" in _error(
        await world.call("county", "POST", url), 403
    )
    approved = await world.call("city", "POST", url)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == "city"

    # The city's approval counts too: a third leave in the window also needs the city.
    third = await _apply(world, "station", _leave(52, 2))
    assert third.json()["level"] == "city"
    # Seven days outside any other leave's two months: back to the station.
    later = await _apply(world, "station", _leave(130, 7, approve=True))
    assert later.status_code == 201, later.text


async def test_the_two_month_total_is_checked_again_at_approval(world: World) -> None:
    """Approved one after the other, two requests that were each fine alone."""
    a = (await _apply(world, "station", _leave(10, 20))).json()
    b = (await _apply(world, "station", _leave(35, 15))).json()
    assert (a["level"], b["level"]) == ("county", "county")
    ok = await world.call("county", "POST", f"/api/v1/leaves/{a['id']}/approve")
    assert ok.status_code == 200, ok.text
    message = _error(await world.call("county", "POST", f"/api/v1/leaves/{b['id']}/approve"), 403)
    assert "须由市级社区矫正机构批准" in message
    assert (await world.get("county", f"/api/v1/leaves/{b['id']}")).json()["status"] == "requested"


async def test_refusing_needs_a_reason_and_the_level(world: World) -> None:
    short = (await _apply(world, "station", _leave(10, 5))).json()
    long = (await _apply(world, "station", _leave(30, 12))).json()
    _error(
        await world.call("station", "POST", f"/api/v1/leaves/{short['id']}/refuse", json={}), 422
    )
    assert "外出12天，须由县级社区矫正机构批准" in _error(
        await world.call(
            "station", "POST", f"/api/v1/leaves/{long['id']}/refuse", json={"reason": "x"}
        ),
        403,
    )
    refused = await world.call(
        "station", "POST", f"/api/v1/leaves/{short['id']}/refuse", json={"reason": "理由不充分"}
    )
    assert refused.status_code == 200, refused.text
    body = refused.json()
    assert (body["status"], body["refused_by"], body["refusal_reason"]) == (
        "refused",
        "station",
        "理由不充分",
    )
    assert "is refused" in _error(
        await world.call("county", "POST", f"/api/v1/leaves/{short['id']}/approve"), 409
    )
    assert "not approved" in _error(
        await world.call("station", "POST", f"/api/v1/leaves/{short['id']}/return"), 409
    )
    assert world.changed == []  # nothing of this reached the engine
    assert await _engine_leaves(world, "P1") == []
    _error(await world.call("auditor", "POST", f"/api/v1/leaves/{long['id']}/approve"), 403)
    _error(await world.call("operator", "POST", f"/api/v1/leaves/{long['id']}/approve"), 403)


async def test_a_request_that_breaks_the_rules_is_refused_with_the_reasons(world: World) -> None:
    permit = _leave(10, 90, kind="permit", schedule=SCHEDULE)
    for body, reason in (
        ({**_leave(10, 3), "destinations": []}, "请填写外出目的地"),
        ({**permit, "schedule": []}, "经常性跨市县活动须写明每周活动时间"),
        (_leave(10, 200, kind="permit", schedule=SCHEDULE), "最长不超过183天"),
        ({**_leave(10, 3), "schedule": SCHEDULE}, "only a recurring permit"),
        ({**permit, "schedule": [{"days": [8], "from": "08:00", "to": "09:00"}]}, "weekdays"),
        ({**permit, "schedule": [{"days": [1], "from": "8h", "to": "09:00"}]}, "HH:MM"),
        ({**permit, "kind": "standing"}, "body.kind"),
    ):
        response = await _apply(world, "county", body)
        assert reason in _error(response, 422), (body, response.text)
    assert await world.pool.fetchval("SELECT count(*) FROM leaves") == 0

    # Short notice is a warning, not a refusal.
    soon = await _apply(world, "station", _leave(1, 2, approve=True))
    assert soon.status_code == 201, soon.text
    assert [(w["code"], w["message_zh"]) for w in soon.json()["warnings"]] == [
        ("short_notice", "未提前3日申请")
    ]


# --- recurring permits -------------------------------------------------------------------


async def test_a_recurring_permit_reaches_the_engine_with_its_hours(world: World) -> None:
    permit = _leave(10, 90, kind="permit", schedule=SCHEDULE, reason="每周到青田上班")
    assert "须由县级社区矫正机构批准" in _error(
        await _apply(world, "station", {**permit, "approve": True}), 403
    )
    created = await _apply(world, "county", {**permit, "approve": True})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["kind"], body["status"], body["level"], body["schedule"]) == (
        "permit",
        "approved",
        "county",
        SCHEDULE,
    )
    [leave] = await _engine_leaves(world, "P1")
    assert leave.id == body["id"]
    assert leave.schedule == parse_schedule(SCHEDULE)
    assert (leave.start, leave.end, leave.destinations) == (
        epoch_ms(_day(10)),
        epoch_ms(_day(100)),
        ("J2",),
    )
    # A permit's days are not leave days: a week's leave in its span is still the station's.
    week = await _apply(world, "station", _leave(20, 7, approve=True))
    assert week.status_code == 201, week.text
    listed = (await world.get("auditor", "/api/v1/supervisees/P1/leaves")).json()["items"]
    assert [(x["kind"], x["schedule"]) for x in listed] == [("permit", SCHEDULE), ("leave", [])]


# --- overdue -----------------------------------------------------------------------------


async def test_overdue_leave_is_listed_by_office(world: World) -> None:
    overdue = await _apply(world, "station", _leave(-3, 2, approve=True))  # ended yesterday
    returned = (await _apply(world, "station", _leave(-6, 2, approve=True))).json()
    current = await _apply(world, "station", _leave(-1, 5, approve=True))  # not ended yet
    pending = await _apply(world, "station", _leave(-5, 1))  # never approved
    permit = _leave(-40, 39, kind="permit", schedule=SCHEDULE, approve=True)
    ended_permit = await _apply(world, "county", permit)  # a permit has no 销假
    elsewhere = await _apply(world, "county", _leave(-4, 2, approve=True), person="P2")
    for response in (overdue, current, pending, ended_permit, elsewhere):
        assert response.status_code == 201, response.text
    back = await world.call("station", "POST", f"/api/v1/leaves/{returned['id']}/return")
    assert back.status_code == 200, back.text

    def ids(response: Any) -> list[str]:
        assert response.status_code == 200, response.text
        return [x["id"] for x in response.json()["items"]]

    station = await world.get("station", "/api/v1/leaves?status=overdue")
    assert ids(station) == [overdue.json()["id"]]
    assert station.json()["items"][0]["overdue"] is True
    # The county sees its stations' people, longest overdue first; K2 sees none of them.
    county = await world.get("county", "/api/v1/leaves?status=overdue")
    assert ids(county) == [elsewhere.json()["id"], overdue.json()["id"]]
    assert ids(await world.get("k2", "/api/v1/leaves?status=overdue")) == []
    assert ids(await world.get("auditor", "/api/v1/leaves?status=overdue&supervisee=P2")) == [
        elsewhere.json()["id"]
    ]
    assert current.json()["overdue"] is False
    _error(await world.get("station", "/api/v1/leaves?status=late"), 422)
    # Away now (在外) and leaving soon (即将外出), as the console's leave list shows them.
    soon = await _apply(world, "station", _leave(3, 2, approve=True))
    assert ids(await world.get("station", "/api/v1/leaves?status=active")) == [current.json()["id"]]
    assert ids(await world.get("operator", "/api/v1/leaves?status=upcoming")) == [soon.json()["id"]]
    # Operators and auditors read the list; only officers and supervisors change it.
    pending_id = pending.json()["id"]
    for who in ("operator", "auditor"):
        for verb, body in (("approve", {}), ("refuse", {"reason": "x"})):
            url = f"/api/v1/leaves/{pending_id}/{verb}"
            _error(await world.call(who, "POST", url, json=body), 403)
        url = f"/api/v1/leaves/{overdue.json()['id']}/return"
        _error(await world.call(who, "POST", url), 403)

    # Reporting back ends it.
    url = f"/api/v1/leaves/{overdue.json()['id']}/return"
    assert (await world.call("station", "POST", url)).status_code == 200
    assert ids(await world.get("station", "/api/v1/leaves?status=overdue")) == []


# --- monitoring orders -------------------------------------------------------------------


def _order(starts: date, ends: date, **extra: Any) -> dict[str, Any]:
    return {
        "ground": "left_without_approval",
        "approved_by": "王局长",
        "starts_on": starts.isoformat(),
        "ends_on": ends.isoformat(),
        **extra,
    }


async def test_only_a_county_supervisor_decides_an_order(world: World) -> None:
    today = datetime.now(LOCAL).date()  # orders run in local calendar days
    url = "/api/v1/supervisees/P1/orders"
    body = _order(today, today + timedelta(days=60))
    for who, reason in (
        ("station", "officer tokens may not decide monitoring orders"),
        ("county_officer", "officer tokens may not decide monitoring orders"),
        ("operator", "operator tokens may not"),
        ("auditor", "read-only"),
        ("centre", "须由县级社区矫正机构或上级决定"),
    ):
        assert reason in _error(await world.call(who, "POST", url, json=body), 403), who
    _error(await world.call("k2", "POST", url, json=body), 404)
    assert await world.pool.fetchval("SELECT count(*) FROM monitoring_orders") == 0


async def test_orders_are_validated_renewed_listed_and_ended(world: World) -> None:
    today = datetime.now(LOCAL).date()  # orders run in local calendar days
    url = "/api/v1/supervisees/P1/orders"
    for body, reason in (
        (_order(today, today, ground="bad_attitude"), "五种情形之一"),
        (_order(today, today + timedelta(days=95)), "不得超过3个月"),
        (_order(today, today - timedelta(days=1)), "结束日期早于开始日期"),
        (_order(today, today, approved_by=" "), "须经县级司法行政部门负责人批准"),
        ({**_order(today, today), "ground": None}, "body.ground"),
    ):
        assert reason in _error(await world.call("county", "POST", url, json=body), 422), body

    created = await world.call("county", "POST", url, json=_order(today, today + timedelta(10)))
    assert created.status_code == 201, created.text
    order = created.json()
    assert (order["active"], order["ground_zh"], order["current_end"], order["days_left"]) == (
        True,
        "无正当理由，未经批准离开所居住的市、县",
        (today + timedelta(10)).isoformat(),
        10,
    )
    assert order["decided_by"] == "county"
    clash = _order(today + timedelta(5), today + timedelta(20), ground="prohibition_breach")
    assert "renew it instead" in _error(await world.call("county", "POST", url, json=clash), 409)

    # Reminders before it runs out (防止超期使用).
    def expiring(response: Any) -> list[int]:
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()["items"]]

    assert expiring(await world.get("station", "/api/v1/orders?expiring_within_days=14")) == [
        order["id"]
    ]
    assert expiring(await world.get("county", "/api/v1/orders?expiring_within_days=3")) == []
    assert expiring(await world.get("k2", "/api/v1/orders?expiring_within_days=14")) == []
    assert expiring(await world.get("auditor", "/api/v1/orders")) == [order["id"]]

    renew = f"/api/v1/orders/{order['id']}/renew"
    until = today + timedelta(10 + 80)
    renewal = {"until": until.isoformat(), "reassessment": "仍有脱管风险", "approved_by": "王局长"}
    for body, reason in (
        ({**renewal, "reassessment": " "}, "延长须经评估"),
        (
            {**renewal, "until": (today + timedelta(10 + 95)).isoformat()},
            "每次延长期限不得超过3个月",
        ),
        ({"until": until.isoformat(), "reassessment": "仍有脱管风险"}, "body.approved_by"),
    ):
        assert reason in _error(await world.call("county", "POST", renew, json=body), 422), body
    _error(
        await world.call(
            "station",
            "POST",
            renew,
            json={"until": until.isoformat(), "reassessment": "x", "approved_by": "x"},
        ),
        403,
    )
    renewed = await world.call("county", "POST", renew, json=renewal)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["current_end"] == until.isoformat()
    assert renewed.json()["ends_on"] == (today + timedelta(10)).isoformat()
    [stored] = renewed.json()["renewals"]
    assert {k: stored[k] for k in renewal} == renewal and stored["recorded_by"] == "county"
    assert expiring(await world.get("county", "/api/v1/orders?expiring_within_days=14")) == []

    history = (await world.get("auditor", "/api/v1/supervisees/P1/orders")).json()["items"]
    assert [o["id"] for o in history] == [order["id"]]
    assert (await world.get("station", f"/api/v1/orders/{order['id']}")).status_code == 200
    _error(await world.get("k2", f"/api/v1/orders/{order['id']}"), 404)

    end = f"/api/v1/orders/{order['id']}/end"
    _error(await world.call("county", "POST", end, json={}), 422)
    ended = await world.call("county", "POST", end, json={"reason": "表现良好，无需继续使用"})
    assert ended.status_code == 200, ended.text
    assert (ended.json()["active"], ended.json()["end_reason"], ended.json()["days_left"]) == (
        False,
        "表现良好，无需继续使用",
        None,
    )
    assert "already removed" in _error(
        await world.call("county", "POST", end, json={"reason": "x"}), 409
    )
    assert "has ended" in _error(await world.call("county", "POST", renew, json=renewal), 422)
    assert expiring(await world.get("auditor", "/api/v1/orders")) == []
    actions = await world.pool.fetch(
        "SELECT action FROM audit_log WHERE object = $1 ORDER BY id", f"order:{order['id']}"
    )
    assert [r["action"] for r in actions] == ["order.decide", "order.renew", "order.end"]


async def test_a_tag_needs_an_order_and_a_phone_does_not(world: World) -> None:
    for device, kind in (("T-NEW", "tag"), ("PH-NEW", "phone")):
        put = await world.call("operator", "PUT", f"/api/v1/devices/{device}", json={"kind": kind})
        assert put.status_code == 200, put.text
    assign = {"supervisee": "P2"}
    refused = await world.call("operator", "POST", "/api/v1/devices/T-NEW/assign", json=assign)
    message = _error(refused, 422)
    assert "no monitoring order in force" in message
    assert "没有有效的使用电子定位装置决定" in refused.json()["detail"]["message_zh"]
    assert world.changed == []
    phone = await world.call("operator", "POST", "/api/v1/devices/PH-NEW/assign", json=assign)
    assert phone.status_code == 200, phone.text  # 信息化核查 needs no order
    # Re-registering the worn phone as a tag would fit a tag without an order.
    assert "no monitoring order" in _error(
        await world.call("operator", "PUT", "/api/v1/devices/PH-NEW", json={"kind": "tag"}), 422
    )

    today = datetime.now(LOCAL).date()  # orders run in local calendar days
    # An order that starts tomorrow does not allow a tag today.
    later = _order(today + timedelta(1), today + timedelta(30))
    future = await world.call("county", "POST", "/api/v1/supervisees/P2/orders", json=later)
    assert future.status_code == 201, future.text
    _error(await world.call("operator", "POST", "/api/v1/devices/T-NEW/assign", json=assign), 422)
    # Removing it leaves P2 with no order at all: the tag the seed fitted without one goes.
    dropped = await world.call(
        "county", "POST", f"/api/v1/orders/{future.json()['id']}/end", json={"reason": "改期"}
    )
    assert dropped.json()["devices_removed"] == ["T-P2"]

    order = await world.call(
        "county", "POST", "/api/v1/supervisees/P2/orders", json=_order(today, today + timedelta(30))
    )
    assert order.status_code == 201, order.text
    fitted = await world.call("operator", "POST", "/api/v1/devices/T-NEW/assign", json=assign)
    assert fitted.status_code == 200, fitted.text
    assert fitted.json()["supervisee"] == "P2"

    # No order, no tag: removing the order takes P2's tags off, and only the tags.
    world.changed.clear()
    ended = await world.call(
        "county", "POST", f"/api/v1/orders/{order.json()['id']}/end", json={"reason": "不再需要"}
    )
    assert ended.status_code == 200, ended.text
    assert ended.json()["devices_removed"] == ["T-NEW"]
    assert world.changed == [["P2"]]
    worn = (await world.get("operator", "/api/v1/supervisees/P2")).json()["devices"]
    assert worn == ["PH-NEW"]
    async with world.pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    [p2] = [p for p in roster.supervisees if p.id == "P2"]
    assert [d.id for d in p2.devices] == ["PH-NEW"]


# --- heightened periods ------------------------------------------------------------------


async def test_heightened_periods_round_trip_into_the_roster(world: World) -> None:
    url = "/api/v1/heightened/spring"
    period = {
        "name": "春节",
        "from": f"{YEAR}-02-15T00:00:00+08:00",
        "to": f"{YEAR}-02-24T00:00:00+08:00",
        "policy": {"confirm_fixes": 2, "offline_s": 600, "trust_acc_m": 100},
    }
    for who in ("station", "auditor"):
        _error(await world.call(who, "PUT", url, json=period), 403)
    for body, reason in (
        ({**period, "policy": {"confirm_fixes": 2, "sirens": True}}, "unknown policy fields"),
        ({**period, "policy": {"confirm_fixes": "two"}}, "Expected `int`"),
        ({**period, "to": f"{YEAR}-02-14T00:00:00+08:00"}, "must end after it starts"),
        ({**period, "from": f"{YEAR}-02-15T00:00:00"}, "timezone"),
    ):
        assert reason in _error(await world.call("operator", "PUT", url, json=body), 422), body
    assert world.changed == []

    put = await world.call("operator", "PUT", url, json=period)
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["id"], body["name"], body["from"], body["to"], body["policy"]) == (
        "spring",
        "春节",
        f"{YEAR}-02-14T16:00:00.000Z",
        f"{YEAR}-02-23T16:00:00.000Z",
        period["policy"],
    )
    assert world.changed == [None]
    assert (await world.get("auditor", url)).json() == body
    meeting = {"name": "全国两会", "from": f"{YEAR}-03-04T00:00:00+08:00",
               "to": f"{YEAR}-03-12T00:00:00+08:00", "policy": {"confirm_s": 30}}  # fmt: skip
    npc = await world.call("county", "PUT", "/api/v1/heightened/npc", json=meeting)
    assert npc.status_code == 200, npc.text
    listed = (await world.get("station", "/api/v1/heightened")).json()["items"]
    assert [p["id"] for p in listed] == ["spring", "npc"]

    async with world.pool.acquire() as conn:
        roster, zones = await load_rules(conn, "Asia/Shanghai")
    start = epoch_ms(datetime(YEAR, 2, 14, 16, tzinfo=UTC))
    assert roster.heightened[0] == Heightened(
        start=start, end=start + 9 * 86_400_000, name="春节", policy=period["policy"]
    )
    rules = RuleSet(roster, zones)
    assert rules.policy("T-P1", start + 3_600_000).confirm_fixes == 2
    assert rules.policy("T-P1", start - 3_600_000).confirm_fixes == 3

    assert (await world.call("operator", "DELETE", url)).status_code == 204
    _error(await world.get("operator", url), 404)
    _error(await world.call("operator", "DELETE", url), 404)
    assert world.changed == [None, None, None]
    async with world.pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    assert [h.name for h in roster.heightened] == ["全国两会"]


# --- audit and offices -------------------------------------------------------------------


async def test_reading_alerts_is_audited(world: World) -> None:
    alert = world.alerts["P1"]
    assert (await world.get("station", f"/api/v1/alerts/{alert}")).status_code == 200
    listed = await world.get("auditor", "/api/v1/alerts?type=jurisdiction_exit")
    assert listed.status_code == 200
    rows = await world.pool.fetch(
        "SELECT actor, action, object, detail FROM audit_log"
        " WHERE action LIKE 'location.alert%' ORDER BY id"
    )
    assert [(r["actor"], r["action"], r["object"]) for r in rows] == [
        ("station", "location.alert", f"alert:{alert}"),
        ("auditor", "location.alerts", "alerts"),
    ]
    assert rows[1]["detail"]["count"] == 3 and rows[1]["detail"]["type"] == "jurisdiction_exit"
    assert sorted(rows[1]["detail"]["ids"]) == sorted(world.alerts.values())


async def test_where_a_protected_person_was_is_shown_only_by_the_alerts_own_audited_read(
    world: World,
) -> None:
    alert = world.alerts["P1"]
    where = {"device": "V1", "lat": 28.45, "lon": 119.92, "radius_m": 8.0}
    await world.pool.execute(
        "UPDATE alerts SET type = 'protected_proximity',"
        " detail = detail || jsonb_build_object('order', 'PP1', 'protected', $2::jsonb)"
        " WHERE id = $1",
        alert,
        where,  # the pool's jsonb codec encodes it
    )
    listed = (await world.get("auditor", "/api/v1/alerts?type=protected_proximity")).json()
    assert [a["id"] for a in listed["items"]] == [alert]
    assert "protected" not in listed["items"][0]["detail"]
    shown = (await world.get("station", f"/api/v1/alerts/{alert}")).json()
    assert shown["detail"]["protected"] == where and shown["detail"]["order"] == "PP1"
    rows = await world.pool.fetch(
        "SELECT actor, action, object FROM audit_log WHERE action LIKE 'location.%' ORDER BY id"
    )
    assert [tuple(r) for r in rows][-2:] == [
        ("station", "location.alert", f"alert:{alert}"),
        ("station", "location.protected", f"alert:{alert}"),
    ]


async def test_releasing_the_supervisee_purges_the_protected_person_at_once(
    world: World,
) -> None:
    await world.pool.execute(
        "INSERT INTO protected_persons (id, supervisee_id, device_id, owntracks)"
        " VALUES ('PP1', 'P1', 'V1', 'victim/phone')"
    )
    alert = world.alerts["P1"]
    await world.pool.execute(
        "UPDATE alerts SET type = 'protected_proximity', detail = detail"
        ' || \'{"order": "PP1", "protected": {"lat": 28.45}}\' WHERE id = $1',
        alert,
    )
    # Their phone's sighting, appended by its shard.
    async with world.pool.acquire() as conn:
        roster, zones = await load_rules(conn, "Asia/Shanghai")
    where = (28.4333333, 119.9333333)
    seen = Sighting("protected:PP1", "V1", *where, 10.0, epoch_ms(datetime.now(UTC)))
    await Feed(world.redis).publish((), [], Engine(RuleSet(roster, zones)), [seen])
    assert await in_redis(world.redis, *where) == {SIGHTINGS}
    body = {"office": "S1", "status": "released"}
    response = await world.call("operator", "PUT", "/api/v1/supervisees/P1", json=body)
    assert response.status_code == 200, response.text
    assert await world.pool.fetchval("SELECT count(*) FROM protected_persons") == 0
    assert await in_redis(world.redis, *where) == set()
    detail = (await world.get("station", f"/api/v1/alerts/{alert}")).json()["detail"]
    assert "protected" not in detail and detail["protected_purged"] is True
    purge = await world.pool.fetchrow(
        "SELECT actor, object, detail FROM audit_log WHERE action = 'protected.purge'"
    )
    assert purge is not None and purge["object"] == "supervisee:P1"
    assert purge["detail"] == {"protected": "PP1", "alerts": 1}
    assert world.changed[-1] == ["P1"]  # the service reloads: the phone is no longer taken


async def test_a_city_office_can_be_recorded(world: World) -> None:
    body = {"name": "温州市社区矫正管理局", "kind": "city", "parent": "C"}
    response = await world.call("operator", "PUT", "/api/v1/offices/W", json=body)
    assert response.status_code == 200, response.text
    _error(
        await world.call("operator", "PUT", "/api/v1/offices/W", json={**body, "kind": "town"}),
        422,
    )
