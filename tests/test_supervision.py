"""Leave approval, monitoring orders and lost contact: the legal rules as an officer meets them."""

from __future__ import annotations

from datetime import date

import pytest

from supervision.leave import DAY_MS, check_leave
from supervision.lost_contact import consequence, escalate
from supervision.orders import OrderError, expiring, new_order, renew

NOW = 1_764_240_000_000


def leave(days: float, **kw: object):  # type: ignore[no-untyped-def]
    start = NOW + 5 * DAY_MS
    return check_leave(
        start, start + int(days * DAY_MS), applied_at=NOW, destinations=["331121"], **kw
    )  # type: ignore[arg-type]


def test_who_may_approve_leave_by_its_length() -> None:
    assert leave(3).level == "station"
    assert leave(7).level == "station"
    assert leave(8).level == "county"
    assert leave(30).level == "county"
    assert leave(31).level == "city"


def test_a_station_cannot_approve_ten_days() -> None:
    check = leave(10, approver_level="station")
    assert [p.code for p in check.refusals] == ["approver_level"]
    assert "县级社区矫正机构" in check.refusals[0].message_zh
    assert leave(10, approver_level="county").refusals == []


def test_over_thirty_days_within_two_months_goes_up_a_level() -> None:
    start = NOW + 5 * DAY_MS
    earlier = [(start - 40 * DAY_MS, start - 15 * DAY_MS)]  # 25 days, ended 15 days ago
    check = leave(7, earlier=earlier, approver_level="county")
    assert check.level == "city"
    assert [p.code for p in check.refusals] == ["approver_level"]
    assert [p.code for p in check.warnings] == ["window_total"]


def test_short_notice_is_a_warning_not_a_refusal() -> None:
    check = check_leave(NOW + DAY_MS, NOW + 2 * DAY_MS, applied_at=NOW, destinations=["x"])
    assert check.refusals == [] and [p.code for p in check.warnings] == ["short_notice"]


def test_recurring_permit_needs_hours_and_lasts_six_months_at_most() -> None:
    check = leave(200, permit=True)
    assert {p.code for p in check.refusals} == {"permit_too_long", "permit_schedule"}
    assert leave(180, permit=True, has_schedule=True).refusals == []


def test_monitoring_order_needs_a_legal_ground_and_lasts_three_months() -> None:
    with pytest.raises(OrderError, match="ground"):
        new_order("looked_suspicious", "局长", date(2026, 1, 1), date(2026, 2, 1))
    with pytest.raises(OrderError, match="3 months"):
        new_order("prohibition_breach", "局长", date(2026, 1, 1), date(2026, 4, 2))
    order = new_order("prohibition_breach", "局长", date(2026, 1, 31), date(2026, 4, 30))
    with pytest.raises(OrderError, match="reassessment"):
        renew(order, date(2026, 6, 30), "", "局长")
    renewed = renew(order, date(2026, 7, 30), "评估：仍需使用", "局长")
    assert renewed.current_end == date(2026, 7, 30)
    with pytest.raises(OrderError, match="at most 3 months"):
        renew(renewed, date(2026, 11, 1), "评估", "局长")
    assert expiring([("o1", renewed)], date(2026, 7, 25), 7) == ["o1"]
    assert expiring([("o1", renewed)], date(2026, 7, 1), 7) == []


def test_lost_contact_consequences() -> None:
    assert consequence(3 * DAY_MS)[0] == "reprimand"
    assert consequence(11 * DAY_MS)[1] == "警告"
    assert consequence(31 * DAY_MS)[0] == "revocation_proposal"
    assert escalate(2, 0) == "warning" and escalate(0, 2) == "revocation_proposal"
