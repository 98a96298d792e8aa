"""Heightened periods (重大节假日、重要会议期间): between two times, stricter thresholds for
the people of some offices — e.g. confirm a breach on fewer fixes, report a silent device
sooner — and shorter escalation waits for their alerts.

A period applies to the offices it names and every office below them; a caller may name
only offices it may act for (by default its own), and only a token of no office may make a
period for everyone. `policy` overrides fields of geofence.policy.Policy and may only make
the rules stricter, within sane ranges (geofence.limits): a heightened period can never be
used to relax or silence alerts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import HeightenedManager, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import LIST_MAX, Name, UtcTime
from geofence.limits import heightened_problems
from storage.db import Conn, Row
from storage.repo import offices as offices_repo
from storage.repo import orders as orders_repo

router = APIRouter(tags=["heightened periods"])

_POLICY_HELP = (
    'geofence.policy.Policy fields to override, e.g. {"confirm_fixes": 2, "offline_s": 600};'
    " each only stricter than every level's base policy"
)


class HeightenedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name = Field("", description="e.g. 春节, 全国两会")
    start: AwareDatetime = Field(alias="from", description="ISO-8601 with offset")
    end: AwareDatetime = Field(alias="to", description="ISO-8601 with offset")
    policy: dict[str, Any] = Field({}, description=_POLICY_HELP)
    offices: list[Name] | None = Field(
        None,
        max_length=LIST_MAX,
        description="the offices (with every office below them) whose people it applies"
        " to; omitted: the caller's own office, or everyone for a token of no office",
    )

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError("the period must end after it starts")
        return self


class Heightened(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    start: UtcTime = Field(alias="from")
    end: UtcTime = Field(alias="to")
    policy: dict[str, Any] = Field(description=_POLICY_HELP)
    offices: list[str] = Field(description="whose people it applies to; empty: everyone")
    active: bool = Field(description="in force now")
    updated_by: str | None
    updated_at: UtcTime


class HeightenedList(BaseModel):
    items: list[Heightened]


def _period(row: Row) -> Heightened:
    now = datetime.now(UTC)
    return Heightened.model_validate({**dict(row), "active": row["from"] <= now < row["to"]})


def _check_policy(body: HeightenedIn) -> None:
    problems = heightened_problems(body.policy)
    if problems:
        raise ApiError(422, f"policy: {'; '.join(problems)}", problems)


async def _scope(conn: Conn, user: Principal, body: HeightenedIn) -> list[str]:
    """The offices the period is to apply to: those named, which the caller must cover."""
    if not body.offices:
        if user.offices is None:
            return []
        if user.office is None:
            raise ApiError(403, "a token of no office may make no heightened period")
        return [user.office]
    wanted = sorted(set(body.offices))
    outside = [o for o in wanted if not user.covers(o)]
    if outside:
        raise ApiError(
            403,
            f"offices {outside} are outside your offices: a heightened period may apply only"
            " where you may act",
        )
    unknown = sorted(set(wanted) - await offices_repo.office_ids(conn))
    if unknown:
        raise ApiError(422, f"offices {unknown} do not exist")
    return wanted


async def _changeable(conn: Conn, user: Principal, period_id: str) -> Row | None:
    """The period if it exists (None if not); 404 if the caller cannot see it, 403 if it
    applies beyond the caller's offices."""
    if not await orders_repo.heightened_exists(conn, period_id):
        return None
    row = await orders_repo.get_heightened(conn, user.offices, period_id)
    if row is None:
        raise not_found(f"heightened period {period_id!r}")
    if user.offices is not None and not (
        row["offices"] and all(user.covers(o) for o in row["offices"])
    ):
        raise ApiError(
            403, f"heightened period {period_id!r} applies beyond your offices: not yours to change"
        )
    return row


@router.get("/heightened", response_model=HeightenedList)
async def list_periods(ctx: Ctx, user: User) -> HeightenedList:
    """The periods that apply to any of the caller's offices."""
    async with ctx.pool.acquire() as conn:
        rows = await orders_repo.list_heightened(conn, user.offices)
    return HeightenedList(items=[_period(r) for r in rows])


@router.get("/heightened/{period_id}", response_model=Heightened)
async def get_period(ctx: Ctx, user: User, period_id: str) -> Heightened:
    async with ctx.pool.acquire() as conn:
        row = await orders_repo.get_heightened(conn, user.offices, period_id)
    if row is None:
        raise not_found(f"heightened period {period_id!r}")
    return _period(row)


@router.put("/heightened/{period_id}", response_model=Heightened)
async def put_period(
    ctx: Ctx, user: HeightenedManager, period_id: str, body: HeightenedIn
) -> Heightened:
    """Create or replace a period; the engine uses it from now on."""
    _check_policy(body)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _changeable(conn, user, period_id)
        offices = await _scope(conn, user, body)
        row = await orders_repo.put_heightened(
            conn,
            period_id,
            name=body.name,
            starts=body.start,
            ends=body.end,
            policy=body.policy,
            offices=offices,
            updated_by=user.subject,
        )
        await audit.record(
            conn,
            user,
            "heightened.put",
            f"heightened:{period_id}",
            {**body.model_dump(mode="json", by_alias=True), "offices": offices},
        )
    await ctx.rules_changed(None)
    return _period(row)


@router.delete("/heightened/{period_id}", status_code=204)
async def delete_period(ctx: Ctx, user: HeightenedManager, period_id: str) -> None:
    async with ctx.pool.acquire() as conn, conn.transaction():
        if await _changeable(conn, user, period_id) is None:
            raise not_found(f"heightened period {period_id!r}")
        await orders_repo.delete_heightened(conn, period_id)
        await audit.record(conn, user, "heightened.delete", f"heightened:{period_id}")
    await ctx.rules_changed(None)
