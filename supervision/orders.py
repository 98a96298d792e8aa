"""Monitoring orders (使用电子定位装置决定, 社区矫正法 Art. 29).

A tag may be fitted only on one of five legal grounds, by decision of the county bureau's
head, for at most three months; each renewal after reassessment adds at most three more;
it comes off as soon as it is no longer needed.
"""

from __future__ import annotations

from datetime import date

import msgspec

GROUNDS = {
    "prohibition_breach": "违反人民法院禁止令",
    "left_without_approval": "无正当理由，未经批准离开所居住的市、县",
    "refused_report_warned": "拒不按照规定报告自己的活动情况，被给予警告",
    "admin_penalty": "违反监督管理规定，被给予治安管理处罚",
    "revocation_sought": "拟提请撤销缓刑、假释或者暂予监外执行收监执行",
}
MAX_MONTHS = 3


class OrderError(ValueError):
    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.message_zh = message_zh


class Renewal(msgspec.Struct, frozen=True):
    until: date
    reassessment: str
    approved_by: str


class Order(msgspec.Struct, frozen=True):
    ground: str
    approved_by: str
    starts_on: date
    ends_on: date
    renewals: tuple[Renewal, ...] = ()
    ended_on: date | None = None

    @property
    def current_end(self) -> date:
        return self.renewals[-1].until if self.renewals else self.ends_on

    def active_on(self, day: date) -> bool:
        end = self.current_end if self.ended_on is None else min(self.current_end, self.ended_on)
        return self.starts_on <= day <= end


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def new_order(ground: str, approved_by: str, starts_on: date, ends_on: date) -> Order:
    if ground not in GROUNDS:
        raise OrderError(
            f"ground must be one of: {', '.join(GROUNDS)}",
            "使用电子定位装置须符合社区矫正法第二十九条规定的五种情形之一",
        )
    if not approved_by.strip():
        raise OrderError(
            "the county bureau head's approval is required", "须经县级司法行政部门负责人批准"
        )
    if ends_on < starts_on:
        raise OrderError("the order ends before it starts", "结束日期早于开始日期")
    if ends_on > add_months(starts_on, MAX_MONTHS):
        raise OrderError(
            f"an order lasts at most {MAX_MONTHS} months",
            f"使用电子定位装置的期限不得超过{MAX_MONTHS}个月",
        )
    return Order(ground, approved_by, starts_on, ends_on)


def renew(order: Order, until: date, reassessment: str, approved_by: str) -> Order:
    if order.ended_on is not None:
        raise OrderError("the order has ended; make a new one", "该决定已解除，须重新决定")
    if not reassessment.strip():
        raise OrderError("a renewal needs the reassessment", "延长须经评估，请填写评估意见")
    if until <= order.current_end or until > add_months(order.current_end, MAX_MONTHS):
        raise OrderError(
            f"each renewal adds at most {MAX_MONTHS} months",
            f"每次延长期限不得超过{MAX_MONTHS}个月",
        )
    return msgspec.structs.replace(
        order, renewals=(*order.renewals, Renewal(until, reassessment, approved_by))
    )


def expiring(orders: list[tuple[str, Order]], today: date, within_days: int) -> list[str]:
    """Ids of active orders ending within `within_days` (reminders before expiry)."""
    return [
        order_id
        for order_id, order in orders
        if order.active_on(today) and (order.current_end - today).days <= within_days
    ]
