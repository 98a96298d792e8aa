"""Leave (外出): approved absences that add destinations to the allowed area, and 销假.

Only basic checks are made here (the leave ends after it starts, destinations exist);
the legal limits on length and on who approves what are not enforced yet.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Self

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import LeaveRecorder, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import UtcTime
from api.routes.supervisees import require_supervisee
from storage import repo

router = APIRouter(tags=["leave"])


class LeaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: AwareDatetime = Field(alias="from", description="ISO-8601 with offset")
    end: AwareDatetime = Field(alias="to", description="ISO-8601 with offset")
    destinations: list[str] = Field([], description="zone ids added to the allowed area")
    reason: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError("the leave must end after it starts")
        return self


class Leave(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    supervisee: str
    start: UtcTime = Field(alias="from")
    end: UtcTime = Field(alias="to")
    destinations: list[str]
    reason: str
    status: str = Field(description="requested | approved | refused | cancelled")
    approved_by: str | None
    returned_at: UtcTime | None = Field(description="when the person reported back (销假)")
    created_at: UtcTime


class LeaveList(BaseModel):
    items: list[Leave]


@router.get("/supervisees/{supervisee_id}/leaves", response_model=LeaveList)
async def list_leaves(ctx: Ctx, user: User, supervisee_id: str) -> LeaveList:
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await repo.list_leaves(conn, supervisee_id)
    return LeaveList(items=[Leave.model_validate(dict(r)) for r in rows])


@router.post("/supervisees/{supervisee_id}/leaves", response_model=Leave, status_code=201)
async def create_leave(ctx: Ctx, user: LeaveRecorder, supervisee_id: str, body: LeaveIn) -> Leave:
    """Record an approved leave; the caller is its approver."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, supervisee_id)
        errors = await repo.zone_reference_errors(conn, destinations=body.destinations)
        if errors:
            raise ApiError(422, "; ".join(errors), errors)
        row = await repo.upsert_leave(
            conn,
            uuid.uuid4().hex,
            supervisee_id,
            body.start,
            body.end,
            body.destinations,
            reason=body.reason,
            approved_by=user.subject,
        )
        leave = Leave.model_validate(dict(row))
        await audit.record(
            conn, user, "leave.create", f"leave:{leave.id}", leave.model_dump(mode="json")
        )
    await ctx.rules_changed([supervisee_id])
    return leave


@router.post("/leaves/{leave_id}/return", response_model=Leave)
async def report_back(ctx: Ctx, user: LeaveRecorder, leave_id: str) -> Leave:
    """销假: the person has reported back; their allowed area shrinks back now."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await repo.get_leave(conn, user.offices, leave_id)
        if current is None:
            raise not_found(f"leave {leave_id!r}")
        if current["status"] != "approved":
            raise ApiError(409, f"leave {leave_id!r} is {current['status']}, not approved")
        row = await repo.return_leave(conn, leave_id, datetime.now(UTC))
        if row is None:
            raise ApiError(
                409, f"leave {leave_id!r} was already reported back at {current['returned_at']}"
            )
        await audit.record(conn, user, "leave.return", f"leave:{leave_id}")
    await ctx.rules_changed([row["supervisee"]])
    return Leave.model_validate(dict(row))
