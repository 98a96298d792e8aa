"""The alert queue: list, timeline, acknowledge (签收) and resolve (处置).

An alert's detail holds the position that confirmed it, so reading alerts is audited like
reading a track (社区矫正法 Art. 29: location data for community corrections only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from alerts import record
from alerts.feed import announce
from api import audit
from api.auth import AlertWorker, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import Text, UtcTime
from storage.db import Conn

router = APIRouter(tags=["alerts"])

Status = Literal["open", "acknowledged", "resolved"]
Disposition = Literal["true_violation", "false_alarm", "approved_absence", "equipment_fault"]


class Held(BaseModel):
    suspension: str
    reason: str = Field(description="hospital | detention | court | other")
    reason_zh: str = Field(description="住院 | 羁押 | 出庭 | 其他")
    reason_text: str
    until: str = Field(description="when it is released unless revoked sooner (UTC)")


class Alert(BaseModel):
    """The alert object of spec 4.3, also sent in webhook events."""

    id: int
    type: str = Field(description="jurisdiction_exit, exclusion_enter, curfew_breach, ...")
    supervisee: str
    device: str
    ts: UtcTime = Field(description="device time of the fix that confirmed it (UTC)")
    status: Status
    late: bool = Field(description="found only through late (buffered) fixes")
    active: bool = Field(description="the condition still holds")
    raised_at: UtcTime
    cleared_at: UtcTime | None = None
    severity: str
    escalation: int
    disposition: Disposition | None = None
    note: str | None = None
    detail: dict[str, Any] = Field(
        {},
        description="what confirmed it (the position, lat/lon); an exclusion zone's alert also"
        " names the zone: zone (its id) and zone_name (its name when the alert was raised)",
    )
    held: Held | None = Field(
        None,
        description="while a suspension window (暂停告警) holds it: not delivered nor escalated"
        " until `until`",
    )


class AlertList(BaseModel):
    items: list[Alert]
    next_before: int | None = Field(
        None, description="pass as `before` for the next (older) page; null on the last page"
    )


class AlertEvent(BaseModel):
    at: UtcTime
    actor: str = Field(description="'engine', 'scheduler' or a token's subject")
    action: str
    detail: dict[str, Any] = {}


class AlertWithTimeline(Alert):
    timeline: list[AlertEvent]


class Acknowledge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text | None = None


def _said_something(note: str) -> str:
    # The console refuses a note of only spaces; a direct API caller gets the same rule, so
    # no case record holds a resolution with nothing said about it.
    if not note.strip():
        raise PydanticCustomError("blank_note", "the note is blank; say what was found and done")
    return note.strip()


class Resolve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: Disposition
    note: Annotated[Text, AfterValidator(_said_something)] = Field(
        description="what was found and done; kept in the case record"
    )


@router.get("/alerts", response_model=AlertList)
async def list_alerts(
    ctx: Ctx,
    user: User,
    supervisee: str | None = None,
    type: str | None = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(description="only alerts with a smaller id")] = None,
) -> AlertList:
    """Newest raised first."""
    async with ctx.pool.acquire() as conn:
        rows = await record.list_alerts(
            conn,
            user.offices,
            supervisee=supervisee,
            type=type,
            status=status,
            before=before,
            limit=limit,
        )
        if rows:
            filters = {"supervisee": supervisee, "type": type, "status": status, "before": before}
            await audit.record(
                conn,
                user,
                "location.alerts",
                "alerts",
                {
                    "count": len(rows),
                    "ids": [r["id"] for r in rows],
                    **{k: v for k, v in filters.items() if v is not None},
                },
            )
    items = [Alert.model_validate(record.alert_object(r)) for r in rows]
    return AlertList(items=items, next_before=items[-1].id if len(items) == limit else None)


@router.get("/alerts/{alert_id}", response_model=AlertWithTimeline)
async def get_alert(ctx: Ctx, user: User, alert_id: int) -> AlertWithTimeline:
    async with ctx.pool.acquire() as conn:
        row = await record.get_alert(conn, user.offices, alert_id)
        if row is None:
            raise not_found(f"alert {alert_id}")
        await audit.record(conn, user, "location.alert", f"alert:{alert_id}")
        return await _with_timeline(conn, record.alert_object(row))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertWithTimeline)
async def acknowledge(
    ctx: Ctx, user: AlertWorker, alert_id: int, body: Acknowledge | None = None
) -> AlertWithTimeline:
    note = body.note if body else None
    return await _transition(ctx, user, alert_id, "acknowledged", None, note)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertWithTimeline)
async def resolve(ctx: Ctx, user: AlertWorker, alert_id: int, body: Resolve) -> AlertWithTimeline:
    return await _transition(ctx, user, alert_id, "resolved", body.disposition, body.note)


async def _transition(
    ctx: Ctx, user: Principal, alert_id: int, to: str, disposition: str | None, note: str | None
) -> AlertWithTimeline:
    detail = {"note": note, "disposition": disposition, "role": user.role}
    detail = {k: v for k, v in detail.items() if v is not None}
    async with ctx.pool.acquire() as conn, conn.transaction():
        try:
            change = await record.take_step(
                conn, user.offices, alert_id, to, actor=user.subject, detail=detail
            )
        except record.StepRefused as exc:
            raise ApiError(409, str(exc)) from None
        if change is None:
            raise not_found(f"alert {alert_id}")
        await audit.record(conn, user, f"alert.{to}", f"alert:{alert_id}", detail)
        result = await _with_timeline(conn, change["alert"])
    await announce(ctx.redis, change)
    return result


async def _with_timeline(conn: Conn, alert: dict[str, Any]) -> AlertWithTimeline:
    events = [AlertEvent.model_validate(dict(e)) for e in await record.timeline(conn, alert["id"])]
    return AlertWithTimeline.model_validate({**alert, "timeline": events})
