"""Monitoring orders (使用电子定位装置决定, 社区矫正法 Art. 29): decision, renewal, removal.

A tag may be fitted only under an order in force (api.routes.devices checks); an order
names one of the five legal grounds and the county bureau head who approved it, lasts at
most 3 months, and each renewal adds at most 3 more after a reassessment — the rules are
supervision.orders'. Only a supervisor of a county (or city) office records these
decisions. Removing an order (解除) takes the person's tags off at once.

Orders run in calendar days of the service's time zone (FENCEWATCH_TIMEZONE), both ends
included.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.auth import OrderDecider, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import Name, Text, UtcTime
from api.routes.supervisees import require_supervisee
from fencewatch.timefmt import iso_time
from storage.db import Conn, Row
from storage.repo import orders as orders_repo
from storage.repo import people as people_repo
from supervision import orders
from supervision.orders import GROUNDS, Order, OrderError, Renewal

router = APIRouter(tags=["monitoring orders"])


def today(tz: ZoneInfo) -> date:
    """The calendar day orders are judged on, in the service's time zone `tz`."""
    return datetime.now(tz).date()


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ground: str = Field(description=f"one of the five legal grounds: {', '.join(GROUNDS)}")
    approved_by: Name = Field(description="the county bureau head who approved it (负责人)")
    starts_on: date
    ends_on: date = Field(description="at most 3 months after starts_on; included")
    note: Text | None = Field(None, description="kept in the audit log")


class RenewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: date = Field(description="new last day; at most 3 months after the current one")
    reassessment: Text = Field(description="the reassessment behind the renewal (评估意见)")
    approved_by: Name = Field(min_length=1, description="the county bureau head who approved it")


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, description="why it is no longer needed (解除理由)")


class RenewalOut(BaseModel):
    until: date
    reassessment: str
    approved_by: str
    recorded_at: UtcTime | None = None
    recorded_by: str | None = None


class MonitoringOrder(BaseModel):
    id: int
    supervisee: str
    ground: str
    ground_zh: str = Field(description="the ground as 社区矫正法 Art. 29 words it")
    approved_by: str
    starts_on: date
    ends_on: date = Field(description="as first decided")
    current_end: date = Field(description="last day in force, after renewals")
    renewals: list[RenewalOut]
    active: bool = Field(description="in force today")
    days_left: int | None = Field(description="days from today to current_end; null once ended")
    decided_by: str | None = Field(description="who recorded the decision")
    created_at: UtcTime
    ended_at: UtcTime | None = Field(description="removed (解除)")
    ended_by: str | None
    end_reason: str | None
    devices_removed: list[str] = Field(
        [], description="tags taken off by this removal (only in the answer to /end)"
    )


class OrderList(BaseModel):
    items: list[MonitoringOrder]


def _order(row: Row, tz: ZoneInfo) -> Order:
    """The stored order as supervision.orders sees it (`tz`: the service's time zone)."""
    ended = row["ended_at"]
    return Order(
        ground=row["ground"],
        approved_by=row["approved_by"],
        starts_on=row["starts_on"],
        ends_on=row["ends_on"],
        renewals=tuple(msgspec.convert(row["renewals"], list[Renewal])),
        ended_on=ended.astimezone(tz).date() if ended is not None else None,
    )


def _out(row: Row, day: date, **extra: Any) -> MonitoringOrder:
    active = row["ended_at"] is None and row["starts_on"] <= day <= row["current_end"]
    return MonitoringOrder.model_validate(
        {
            **dict(row),
            "ground_zh": GROUNDS.get(row["ground"], ""),
            "active": active,
            "days_left": None if row["ended_at"] else (row["current_end"] - day).days,
            **extra,
        }
    )


def _invalid(exc: OrderError) -> ApiError:
    return ApiError(
        422, f"{exc} — {exc.message_zh}", {"message": str(exc), "message_zh": exc.message_zh}
    )


def _require_county(user: Principal, what: str) -> None:
    user.require_level("county", what)


async def _order_in_scope(conn: Conn, user: Principal, order_id: int, lock: bool = False) -> Row:
    row = await orders_repo.get_order(conn, user.offices, order_id, lock=lock)
    if row is None:
        raise not_found(f"monitoring order {order_id}")
    return row


@router.post("/supervisees/{supervisee_id}/orders", response_model=MonitoringOrder, status_code=201)
async def decide(
    ctx: Ctx, user: OrderDecider, supervisee_id: str, body: OrderIn
) -> MonitoringOrder:
    """Record a decision to use an electronic location device (使用电子定位装置决定)."""
    _require_county(user, "a monitoring order")
    try:
        order = orders.new_order(body.ground, body.approved_by, body.starts_on, body.ends_on)
    except OrderError as exc:
        raise _invalid(exc) from None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, supervisee_id)
        await people_repo.lock_supervisee(conn, supervisee_id)
        clash = await orders_repo.overlapping_orders(
            conn, supervisee_id, order.starts_on, order.ends_on
        )
        if clash:
            raise ApiError(
                409,
                f"supervisee {supervisee_id!r} already has monitoring order {clash[0]} in that"
                " period: renew it instead — 该期间已有使用电子定位装置决定，请办理延长",
                {"orders": clash},
            )
        row = await orders_repo.insert_order(
            conn,
            supervisee_id,
            ground=order.ground,
            approved_by=order.approved_by,
            starts_on=order.starts_on,
            ends_on=order.ends_on,
            decided_by=user.subject,
        )
        await audit.record(
            conn,
            user,
            "order.decide",
            f"order:{row['id']}",
            {**body.model_dump(mode="json"), "supervisee": supervisee_id},
        )
    return _out(row, today(ctx.timezone))


@router.get("/supervisees/{supervisee_id}/orders", response_model=OrderList)
async def person_orders(ctx: Ctx, user: User, supervisee_id: str) -> OrderList:
    """Every order of the person, oldest first: the case record keeps them all."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await orders_repo.list_orders(conn, supervisee_id)
    day = today(ctx.timezone)
    return OrderList(items=[_out(r, day) for r in rows])


@router.get("/orders", response_model=OrderList)
async def current_orders(
    ctx: Ctx,
    user: User,
    expiring_within_days: Annotated[
        int | None,
        Query(ge=0, le=366, description="only those ending within this many days (reminders)"),
    ] = None,
) -> OrderList:
    """Orders in force today for the people in the caller's offices, soonest end first —
    with `expiring_within_days`, the ones to renew or remove soon (防止超期使用)."""
    day = today(ctx.timezone)
    async with ctx.pool.acquire() as conn:
        rows = await orders_repo.open_orders(conn, user.offices)
    by_id = {str(r["id"]): r for r in rows}
    candidates = [(key, _order(r, ctx.timezone)) for key, r in by_id.items()]
    if expiring_within_days is None:
        keep = [key for key, order in candidates if order.active_on(day)]
    else:
        keep = orders.expiring(candidates, day, expiring_within_days)
    return OrderList(items=[_out(by_id[key], day) for key in keep])


@router.get("/orders/{order_id}", response_model=MonitoringOrder)
async def get_order(ctx: Ctx, user: User, order_id: int) -> MonitoringOrder:
    async with ctx.pool.acquire() as conn:
        row = await _order_in_scope(conn, user, order_id)
    return _out(row, today(ctx.timezone))


@router.post("/orders/{order_id}/renew", response_model=MonitoringOrder)
async def renew(ctx: Ctx, user: OrderDecider, order_id: int, body: RenewIn) -> MonitoringOrder:
    """Renew (延长) after a reassessment, by at most 3 months from the current end."""
    _require_county(user, "renewing a monitoring order")
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _order_in_scope(conn, user, order_id, lock=True)
        try:
            orders.renew(_order(row, ctx.timezone), body.until, body.reassessment, body.approved_by)
        except OrderError as exc:
            raise _invalid(exc) from None
        renewal = {
            **body.model_dump(mode="json"),
            "recorded_at": iso_time(datetime.now(UTC)),
            "recorded_by": user.subject,
        }
        row = await orders_repo.set_order_renewals(conn, order_id, [*row["renewals"], renewal])
        await audit.record(conn, user, "order.renew", f"order:{order_id}", renewal)
    return _out(row, today(ctx.timezone))


@router.post("/orders/{order_id}/end", response_model=MonitoringOrder)
async def end(ctx: Ctx, user: OrderDecider, order_id: int, body: EndIn) -> MonitoringOrder:
    """Remove (解除) an order that is no longer needed. Unless another order of the person
    is still in force, their tags are unassigned now: no order, no tag."""
    _require_county(user, "removing a monitoring order")
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _order_in_scope(conn, user, order_id, lock=True)
        if row["ended_at"] is not None:
            raise ApiError(409, f"monitoring order {order_id} was already removed")
        supervisee = row["supervisee"]
        await people_repo.lock_supervisee(conn, supervisee)
        row = await orders_repo.end_order(conn, order_id, user.subject, body.reason)
        removed: list[str] = []
        if not await orders_repo.has_active_order(conn, supervisee, today(ctx.timezone)):
            removed = await people_repo.unassign_devices_of_kind(conn, supervisee, "tag")
        await audit.record(
            conn,
            user,
            "order.end",
            f"order:{order_id}",
            {"reason": body.reason, "devices_removed": removed},
        )
    if removed:
        await ctx.rules_changed([supervisee])
    return _out(row, today(ctx.timezone), devices_removed=removed)
