"""Suspension windows (暂停告警): asked for, approved or refused, revoked.

An officer asks for a person's alerts of some types (or all) to be held for a stated reason
until an end time (supervision.suspension: at most 30 days); a supervisor other than the
one who asked approves it, and only then does it hold anything (alerts.hold). It can be
revoked at any time before it ends: a request is withdrawn, an approved window ends now and
the alerts it held are released. Every step is in the audit log.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from alerts.record import NOTIFY_CHANNEL, SEVERITY
from api import audit
from api.auth import Principal, Suspender, SuspensionApprover, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import LIST_MAX, Text, UtcTime
from api.routes.leaves import Approve, Refuse
from api.routes.supervisees import require_supervisee
from fencewatch.timefmt import epoch_ms
from storage.db import Conn, Row
from storage.repo import suspensions as suspensions_repo
from supervision.suspension import MAX_DAYS, NEVER_HELD, REASONS, check_window

router = APIRouter(tags=["suspensions"])

HOLDABLE = sorted(set(SEVERITY) - NEVER_HELD)
Reason = Literal["hospital", "detention", "court", "other"]
Status = Literal["requested", "approved", "refused", "revoked", "in_force"]


class SuspensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    types: list[str] = Field(
        [],
        max_length=LIST_MAX,
        description=f"alert types to hold, of {', '.join(HOLDABLE)}; empty: all of them",
    )
    reason: Reason = Field(description="hospital (住院), detention (羁押), court (出庭), other")
    reason_text: Text = Field("", description="the circumstances; required for `other`")
    start: AwareDatetime | None = Field(None, alias="from", description="default: now")
    end: AwareDatetime = Field(alias="to", description=f"at most {MAX_DAYS} days after `from`")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        unknown = sorted(set(self.types) - set(HOLDABLE))
        if unknown:
            raise ValueError(f"alert types that cannot be held: {', '.join(unknown)}")
        self.types = sorted(set(self.types))
        self.reason_text = self.reason_text.strip()
        if self.reason == "other" and not self.reason_text:
            raise ValueError("say what the reason is (其他原因须写明)")
        return self


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, description="why it ends early (提前结束的理由)")


class Suspension(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    supervisee: str
    types: list[str] = Field(description="the alert types held; empty: all that can be held")
    reason: Reason
    reason_zh: str = Field(description="住院 | 羁押 | 出庭 | 其他")
    reason_text: str
    start: UtcTime = Field(alias="from")
    end: UtcTime = Field(alias="to")
    status: str = Field(description="requested | approved | refused | revoked")
    in_force: bool = Field(description="approved, begun and not ended: alerts are held now")
    requested_by: str
    approved_by: str | None
    refused_by: str | None
    refusal_reason: str | None
    decided_at: UtcTime | None
    revoked_by: str | None
    revoked_at: UtcTime | None
    revoke_reason: str | None
    created_at: UtcTime


class SuspensionList(BaseModel):
    items: list[Suspension]


def _suspension(row: Row) -> Suspension:
    return Suspension.model_validate({**dict(row), "reason_zh": REASONS[row["reason"]]})


def _check(start: datetime, end: datetime) -> None:
    problems = check_window(epoch_ms(start), epoch_ms(end), now=epoch_ms(datetime.now(UTC)))
    if problems:
        reasons = "; ".join(f"{p.message} — {p.message_zh}" for p in problems)
        raise ApiError(422, f"the suspension cannot be: {reasons}")


async def _in_scope(conn: Conn, user: Principal, suspension_id: str) -> Row:
    """The suspension, locked; 404 outside the caller's offices."""
    row = await suspensions_repo.get_suspension(conn, user.offices, suspension_id, lock=True)
    if row is None:
        raise not_found(f"suspension {suspension_id!r}")
    return row


@router.get("/supervisees/{supervisee_id}/suspensions", response_model=SuspensionList)
async def list_person_suspensions(ctx: Ctx, user: User, supervisee_id: str) -> SuspensionList:
    """Every suspension of the person, latest first: the case record keeps them all."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await suspensions_repo.list_suspensions(conn, supervisee_id)
    return SuspensionList(items=[_suspension(r) for r in rows])


@router.get("/suspensions", response_model=SuspensionList)
async def list_suspensions(
    ctx: Ctx,
    user: User,
    status: Annotated[
        Status | None,
        Query(description="`requested`: waiting for a supervisor; `in_force`: holding alerts now"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> SuspensionList:
    """Suspensions of the active supervisees in the caller's offices."""
    async with ctx.pool.acquire() as conn:
        rows = await suspensions_repo.find_suspensions(conn, user.offices, status, limit)
    return SuspensionList(items=[_suspension(r) for r in rows])


@router.post("/supervisees/{supervisee_id}/suspensions", response_model=Suspension, status_code=201)
async def request_suspension(
    ctx: Ctx, user: Suspender, supervisee_id: str, body: SuspensionIn
) -> Suspension:
    """Ask for the person's alerts to be held: recorded as `requested`, holding nothing until
    a supervisor approves it."""
    start = body.start or datetime.now(UTC)
    _check(start, body.end)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, supervisee_id)
        row = await suspensions_repo.insert_suspension(
            conn,
            uuid.uuid4().hex,
            supervisee_id,
            types=body.types,
            reason=body.reason,
            reason_text=body.reason_text,
            starts=start,
            ends=body.end,
            requested_by=user.subject,
        )
        suspension = _suspension(row)
        await audit.record(
            conn,
            user,
            "suspension.request",
            f"suspension:{suspension.id}",
            suspension.model_dump(mode="json", by_alias=True),
            supervisee=supervisee_id,
        )
    return suspension


async def _requested(conn: Conn, user: Principal, suspension_id: str) -> Row:
    row = await _in_scope(conn, user, suspension_id)
    if row["status"] != "requested":
        raise ApiError(
            409,
            f"suspension {suspension_id!r} is {row['status']}; only a request is decided",
        )
    return row


@router.post("/suspensions/{suspension_id}/approve", response_model=Suspension)
async def approve(
    ctx: Ctx, user: SuspensionApprover, suspension_id: str, body: Approve | None = None
) -> Suspension:
    """Approve a request; from its start, the person's alerts of its types are held. The one
    who asked cannot approve it, and a window that has already ended cannot be approved."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _requested(conn, user, suspension_id)
        if row["requested_by"] == user.subject:
            raise ApiError(
                403,
                "a suspension is approved by someone other than who asked for it"
                " — 暂停告警须由申请人以外的人批准",
            )
        _check(row["from"], row["to"])
        row = await suspensions_repo.decide_suspension(
            conn, suspension_id, approved_by=user.subject
        )
        detail = {"note": body.note} if body and body.note else {}
        await audit.record(
            conn,
            user,
            "suspension.approve",
            f"suspension:{suspension_id}",
            detail,
            supervisee=row["supervisee"],
        )
    return _suspension(row)


@router.post("/suspensions/{suspension_id}/refuse", response_model=Suspension)
async def refuse(
    ctx: Ctx, user: SuspensionApprover, suspension_id: str, body: Refuse
) -> Suspension:
    """Refuse a request with the reason; it never holds anything."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _requested(conn, user, suspension_id)
        row = await suspensions_repo.decide_suspension(
            conn, suspension_id, refused_by=user.subject, reason=body.reason
        )
        await audit.record(
            conn,
            user,
            "suspension.refuse",
            f"suspension:{suspension_id}",
            {"reason": body.reason},
            supervisee=row["supervisee"],
        )
    return _suspension(row)


@router.post("/suspensions/{suspension_id}/revoke", response_model=Suspension)
async def revoke(ctx: Ctx, user: Suspender, suspension_id: str, body: Revoke) -> Suspension:
    """End a suspension early (or withdraw a request): the alerts it holds are released at
    once — delivered, and escalated from now if still open."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _in_scope(conn, user, suspension_id)
        ended = row["to"] <= datetime.now(UTC)
        if row["status"] not in ("requested", "approved") or ended:
            state = "ended" if ended and row["status"] == "approved" else row["status"]
            raise ApiError(409, f"suspension {suspension_id!r} is {state}; nothing to revoke")
        row = await suspensions_repo.revoke_suspension(
            conn, suspension_id, user.subject, body.reason
        )
        await audit.record(
            conn,
            user,
            "suspension.revoke",
            f"suspension:{suspension_id}",
            {"reason": body.reason},
            supervisee=row["supervisee"],
        )
        # The escalator releases what it held as soon as this commits.
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return _suspension(row)
