"""Leave (外出): applied for, approved or refused at the level its length needs, and 销假.

The rules are supervision.leave.check_leave's (the 实施办法 as practised, configurable
defaults): up to 7 days a justice station approves, up to 30 the county bureau, longer —
or over 30 days in total within two months — the city. A recurring permit (经常性跨市县
活动) is a leave of kind `permit` with weekly hours, at most 6 months, approved by the
county. Only approved leave reaches the engine; a request changes nothing there.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import LeaveRecorder, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import LIST_MAX, Name, Text, UtcTime
from api.routes.supervisees import require_supervisee
from api.routes.zones import Window
from fencewatch.timefmt import epoch_ms
from geofence.zones import ZoneError, parse_schedule
from storage.db import Conn, Row
from storage.repo import leave as leave_repo
from storage.repo import people as people_repo
from storage.repo import zones as zones_repo
from supervision.leave import LEVEL_NAMES, LeaveCheck, check_leave, days_of

router = APIRouter(tags=["leave"])

Kind = Literal["leave", "permit"]
Status = Literal["requested", "approved", "refused", "cancelled", "overdue", "active", "upcoming"]


class LeaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: AwareDatetime = Field(alias="from", description="ISO-8601 with offset")
    end: AwareDatetime = Field(alias="to", description="ISO-8601 with offset")
    destinations: list[Name] = Field(
        [], max_length=LIST_MAX, description="zone ids added to the allowed area"
    )
    reason: Text = ""
    kind: Kind = Field(
        "leave", description="leave (外出), or permit: a recurring cross-county permit"
    )
    schedule: list[Window] = Field(
        [], description="a permit's weekly hours, when its destinations are allowed"
    )
    approve: bool = Field(
        False,
        description="approve at once; refused (nothing recorded) unless the caller's office"
        " may approve this leave",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end <= self.start:
            raise ValueError("the leave must end after it starts")
        if self.schedule and self.kind != "permit":
            raise ValueError("only a recurring permit (kind 'permit') has a weekly schedule")
        return self


class Problem(BaseModel):
    code: str
    message: str = Field(description="English")
    message_zh: str = Field(description="中文")


class Leave(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    supervisee: str
    kind: Kind
    start: UtcTime = Field(alias="from")
    end: UtcTime = Field(alias="to")
    destinations: list[str]
    schedule: list[Window] = Field(description="a permit's weekly hours; empty for leave")
    reason: str
    status: str = Field(description="requested | approved | refused | cancelled")
    days: int = Field(description="calendar days it spans, as the approval rules count them")
    level: str | None = Field(
        description="who must approve it: station | county | city (null: recorded without"
        " a check, e.g. by `fencewatch load`)"
    )
    level_zh: str | None = Field(description="司法所 | 县级社区矫正机构 | 市级社区矫正机构")
    warnings: list[Problem] = Field(
        description="from the rule check at the last decision: short notice, two-month total"
    )
    applied_by: str | None
    approved_by: str | None
    refused_by: str | None
    refusal_reason: str | None
    decided_at: UtcTime | None
    returned_at: UtcTime | None = Field(description="when the person reported back (销假)")
    overdue: bool = Field(description="approved, ended, and no return reported")
    created_at: UtcTime = Field(description="when it was applied for")


class LeaveList(BaseModel):
    items: list[Leave]


class Approve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text | None = Field(None, description="kept in the audit log")


class Refuse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, description="why (不予批准的理由), shown to the applicant")


def _leave(row: Row) -> Leave:
    data = dict(row)
    data["days"] = days_of(epoch_ms(row["from"]), epoch_ms(row["to"]))
    data["level_zh"] = LEVEL_NAMES.get(row["level"] or "")
    return Leave.model_validate(data)


def _problems(problems: list[Any]) -> list[dict[str, str]]:
    return [{"code": p.code, "message": p.message, "message_zh": p.message_zh} for p in problems]


async def _check(
    conn: Conn,
    supervisee: str,
    start: datetime,
    end: datetime,
    *,
    kind: str,
    destinations: list[str],
    has_schedule: bool,
    applied_at: datetime,
    approver: Principal | None,
    besides: str | None = None,
) -> LeaveCheck:
    """The rule check against the person's other approved leave (the two-month total)."""
    earlier = await leave_repo.approved_leave_windows(conn, supervisee, besides=besides)
    return check_leave(
        epoch_ms(start),
        epoch_ms(end),
        applied_at=epoch_ms(applied_at),
        earlier=[(epoch_ms(s), epoch_ms(e)) for s, e in earlier],
        approver_level=approver.level if approver is not None else None,
        permit=kind == "permit",
        destinations=destinations,
        has_schedule=has_schedule,
    )


def _refuse(check: LeaveCheck, *, approving: Principal | None, verb: str = "approve") -> None:
    """422 when the request itself breaks the rules; 403 when `approving` may not decide
    it. The reasons come in English and Chinese, and in full in `detail`."""
    detail = {
        "days": check.days,
        "level": check.level,
        "refusals": _problems(check.refusals),
        "warnings": _problems(check.warnings),
    }
    broken = [p for p in check.refusals if p.code != "approver_level"]
    if broken:
        reasons = "; ".join(f"{p.message} — {p.message_zh}" for p in broken)
        raise ApiError(422, f"the leave breaks the rules: {reasons}", detail)
    if approving is None:
        return
    if approving.level is None:
        where = f"office {approving.office!r}" if approving.office else "this token"
        raise ApiError(
            403,
            f"cannot {verb}: {where} is not a station, county or city office"
            f" — 外出须由{LEVEL_NAMES[check.level]}批准",
            detail,
        )
    if check.refusals:
        p = check.refusals[0]
        raise ApiError(403, f"cannot {verb}: {p.message} — {p.message_zh}", detail)


@router.get("/supervisees/{supervisee_id}/leaves", response_model=LeaveList)
async def list_person_leaves(ctx: Ctx, user: User, supervisee_id: str) -> LeaveList:
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await leave_repo.list_leaves(conn, supervisee_id)
    return LeaveList(items=[_leave(r) for r in rows])


@router.get("/leaves", response_model=LeaveList)
async def list_leaves(
    ctx: Ctx,
    user: User,
    status: Annotated[
        Status | None,
        Query(
            description="`requested`: waiting for a decision; `overdue`: approved, ended and"
            " not reported back (销假), longest overdue first; `active`: approved, begun, not"
            " over nor reported back (在外), soonest back first; `upcoming`: approved, not"
            " begun (即将外出), soonest first"
        ),
    ] = None,
    supervisee: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> LeaveList:
    """Leave of the active supervisees in the caller's offices."""
    async with ctx.pool.acquire() as conn:
        rows = await leave_repo.find_leaves(conn, user.offices, status, supervisee, limit)
    return LeaveList(items=[_leave(r) for r in rows])


@router.get("/leaves/{leave_id}", response_model=Leave)
async def get_leave(ctx: Ctx, user: User, leave_id: str) -> Leave:
    async with ctx.pool.acquire() as conn:
        row = await leave_repo.get_leave(conn, user.offices, leave_id)
    if row is None:
        raise not_found(f"leave {leave_id!r}")
    return _leave(row)


@router.post("/supervisees/{supervisee_id}/leaves", response_model=Leave, status_code=201)
async def apply(ctx: Ctx, user: LeaveRecorder, supervisee_id: str, body: LeaveIn) -> Leave:
    """Apply for leave (or a recurring permit): recorded as `requested` with the level that
    must approve it and the rule check's warnings; a request that breaks the rules is
    refused with the reasons. With `"approve": true` it is approved at once, provided the
    caller's office may approve it (otherwise 403 and nothing is recorded)."""
    try:
        schedule = parse_schedule([w.model_dump(by_alias=True) for w in body.schedule])
    except ZoneError as exc:
        raise ApiError(422, f"schedule: {exc}") from None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, supervisee_id)
        errors = await zones_repo.zone_reference_errors(
            conn, user.offices, destinations=body.destinations
        )
        if errors:
            raise ApiError(422, "; ".join(errors), errors)
        await people_repo.lock_supervisee(conn, supervisee_id)
        check = await _check(
            conn,
            supervisee_id,
            body.start,
            body.end,
            kind=body.kind,
            destinations=body.destinations,
            has_schedule=bool(schedule),
            applied_at=datetime.now(UTC),
            approver=user if body.approve else None,
        )
        _refuse(check, approving=user if body.approve else None)
        row = await leave_repo.upsert_leave(
            conn,
            uuid.uuid4().hex,
            supervisee_id,
            body.start,
            body.end,
            body.destinations,
            reason=body.reason,
            status="approved" if body.approve else "requested",
            approved_by=user.subject if body.approve else None,
            kind=body.kind,
            schedule=schedule,
            level=check.level,
            warnings=_problems(check.warnings),
            applied_by=user.subject,
        )
        leave = _leave(row)
        await audit.record(
            conn, user, "leave.apply", f"leave:{leave.id}", leave.model_dump(mode="json")
        )
        if body.approve:
            await audit.record(conn, user, "leave.approve", f"leave:{leave.id}")
    if body.approve:
        await ctx.rules_changed([supervisee_id])
    return leave


async def _decide(conn: Conn, user: Principal, leave_id: str) -> tuple[Row, LeaveCheck]:
    """The requested leave, locked, and its rule check as of now with the caller as the
    approver; 404 outside the caller's offices, 409 once decided."""
    current = await leave_repo.get_leave(conn, user.offices, leave_id)
    if current is None:
        raise not_found(f"leave {leave_id!r}")
    await people_repo.lock_supervisee(conn, current["supervisee"])
    current = await leave_repo.get_leave(conn, user.offices, leave_id, lock=True)
    assert current is not None
    if current["status"] != "requested":
        raise ApiError(
            409, f"leave {leave_id!r} is {current['status']}; only a requested leave is decided"
        )
    check = await _check(
        conn,
        current["supervisee"],
        current["from"],
        current["to"],
        kind=current["kind"],
        destinations=current["destinations"],
        has_schedule=bool(current["schedule"]),
        applied_at=current["created_at"],  # notice is counted from the application
        approver=user,
        besides=leave_id,
    )
    return current, check


@router.post("/leaves/{leave_id}/approve", response_model=Leave)
async def approve(
    ctx: Ctx, user: LeaveRecorder, leave_id: str, body: Approve | None = None
) -> Leave:
    """Approve a requested leave. The rules are checked again now (other leave may have
    been approved since): the caller's office must be at the level the leave needs."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        current, check = await _decide(conn, user, leave_id)
        _refuse(check, approving=user)
        row = await leave_repo.decide_leave(
            conn,
            leave_id,
            approved_by=user.subject,
            level=check.level,
            warnings=_problems(check.warnings),
        )
        detail = {"level": check.level, "days": check.days}
        if body and body.note:
            detail["note"] = body.note
        await audit.record(conn, user, "leave.approve", f"leave:{leave_id}", detail)
    await ctx.rules_changed([current["supervisee"]])
    return _leave(row)


@router.post("/leaves/{leave_id}/refuse", response_model=Leave)
async def refuse(ctx: Ctx, user: LeaveRecorder, leave_id: str, body: Refuse) -> Leave:
    """Refuse a requested leave with the reason; decided at the same level as approval."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        _, check = await _decide(conn, user, leave_id)
        # The request's own defects are no obstacle to refusing it: only who decides is.
        level_only = [p for p in check.refusals if p.code == "approver_level"]
        _refuse(
            LeaveCheck(check.days, check.level, level_only, check.warnings),
            approving=user,
            verb="refuse",
        )
        row = await leave_repo.decide_leave(
            conn,
            leave_id,
            refused_by=user.subject,
            reason=body.reason,
            level=check.level,
            warnings=_problems(check.warnings),
        )
        await audit.record(conn, user, "leave.refuse", f"leave:{leave_id}", {"reason": body.reason})
    return _leave(row)


@router.post("/leaves/{leave_id}/return", response_model=Leave)
async def report_back(ctx: Ctx, user: LeaveRecorder, leave_id: str) -> Leave:
    """销假: the person has reported back; their allowed area shrinks back now. For a
    recurring permit it ends the permit early."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await leave_repo.get_leave(conn, user.offices, leave_id)
        if current is None:
            raise not_found(f"leave {leave_id!r}")
        if current["status"] != "approved":
            raise ApiError(409, f"leave {leave_id!r} is {current['status']}, not approved")
        row = await leave_repo.return_leave(conn, leave_id, datetime.now(UTC))
        if row is None:
            raise ApiError(
                409, f"leave {leave_id!r} was already reported back at {current['returned_at']}"
            )
        await audit.record(conn, user, "leave.return", f"leave:{leave_id}")
    await ctx.rules_changed([row["supervisee"]])
    return _leave(row)
