"""The alert queue: list, timeline, acknowledge (签收) and resolve (处置).

A breach still in progress (`active`) is resolved only on purpose (`while_active`), and as a
false alarm only with a reason: alerts/record.py keeps that rule for every caller.

An alert's detail holds the position that confirmed it, so reading alerts is audited like
reading a track (社区矫正法 Art. 29: location data for community corrections only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
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
# record.FALSE_ALARM_REASONS, spelled out for the OpenAPI.
FalseAlarmReason = Literal["verified_in_place", "position_drift", "zone_error"]


class Held(BaseModel):
    suspension: str
    reason: str = Field(description="hospital | detention | court | other")
    reason_zh: str = Field(description="住院 | 羁押 | 出庭 | 其他")
    reason_text: str
    until: str = Field(description="when it is released unless revoked sooner (UTC)")


class Alert(BaseModel):
    """The alert object of spec 4.3, also sent in webhook events."""

    id: int
    type: str = Field(
        description="jurisdiction_exit, exclusion_enter, curfew_breach, device_separation, ..."
    )
    supervisee: str
    device: str
    ts: UtcTime = Field(description="device time of the fix that confirmed it (UTC)")
    status: Status
    late: bool = Field(description="found only through late (buffered) fixes")
    active: bool = Field(
        description="the condition still holds; a breach (jurisdiction_exit, exclusion_enter,"
        " curfew_breach) resolved while active is still in breach (仍在越界) until it ends"
    )
    raised_at: UtcTime
    cleared_at: UtcTime | None = None
    severity: str
    escalation: int
    disposition: Disposition | None = None
    reason: FalseAlarmReason | None = Field(
        None, description="why a false alarm was one (given when resolving one)"
    )
    note: str | None = None
    detail: dict[str, Any] = Field(
        {},
        description="what confirmed it (the position, lat/lon); an exclusion zone's alert also"
        " names the zone: zone (its id) and zone_name (its name when the alert was raised);"
        " a device_separation (人机分离) gives the phone's position and circle (lat, lon,"
        " radius_m), the device with the person (with_person) and its position (person_lat,"
        " person_lon, person_radius_m), distance_m and apart_s; a device_offline names the"
        " person's devices that kept reporting (still_reporting)",
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
    reason: FalseAlarmReason | None = Field(
        None,
        description="only with false_alarm: why it was one — verified_in_place (the person was"
        " checked where they should be: a call, a video call, a visit), position_drift, or"
        " zone_error. Required when the breach is still in progress",
    )
    while_active: bool = Field(
        False,
        description="the caller knows the breach is still in progress (the person is still"
        " outside) and resolves it anyway; without it such a resolve is refused with 409",
    )

    @model_validator(mode="after")
    def _reason_only_for_false_alarm(self) -> Resolve:
        if self.reason is not None and self.disposition != "false_alarm":
            raise PydanticCustomError("reason", "a reason is given only with false_alarm")
        return self


@router.get("/alerts", response_model=AlertList)
async def list_alerts(
    ctx: Ctx,
    user: User,
    supervisee: str | None = None,
    type: str | None = None,
    status: Status | None = None,
    active: Annotated[
        bool | None,
        Query(description="only alerts whose condition still holds (true) or has ended (false)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(description="only alerts with a smaller id")] = None,
) -> AlertList:
    """Newest raised first. `status=resolved&active=true` lists the breaches still in
    progress after their resolution (仍在越界)."""
    async with ctx.pool.acquire() as conn:
        rows = await record.list_alerts(
            conn,
            user.offices,
            supervisee=supervisee,
            type=type,
            status=status,
            before=before,
            limit=limit,
            active=active,
        )
        if rows:
            filters = {
                "supervisee": supervisee,
                "type": type,
                "status": status,
                "active": active,
                "before": before,
            }
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
        if record.PROTECTED_EVIDENCE in (row["detail"] or {}):
            # Where a protected person was: a read of its own (docs/security.md).
            await audit.record(conn, user, "location.protected", f"alert:{alert_id}")
        return await _with_timeline(conn, record.alert_object(row, protected=True))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertWithTimeline)
async def acknowledge(
    ctx: Ctx, user: AlertWorker, alert_id: int, body: Acknowledge | None = None
) -> AlertWithTimeline:
    return await _transition(
        ctx, user, alert_id, "acknowledged", {"note": body.note if body else None}
    )


@router.post("/alerts/{alert_id}/resolve", response_model=AlertWithTimeline)
async def resolve(ctx: Ctx, user: AlertWorker, alert_id: int, body: Resolve) -> AlertWithTimeline:
    """Close the case with a disposition and a note. A breach still in progress (`active`:
    the person is still outside) is refused with 409 (detail.still_in_breach) unless
    `while_active` is true, and as a false alarm also needs a `reason`. Resolved while
    active, the alert stays active (仍在越界) until the engine sees the person back; if the
    breach comes back within minutes of ending, the alert reopens as open."""
    return await _transition(
        ctx,
        user,
        alert_id,
        "resolved",
        {"disposition": body.disposition, "reason": body.reason, "note": body.note},
        while_active=body.while_active,
    )


async def _transition(
    ctx: Ctx,
    user: Principal,
    alert_id: int,
    to: str,
    given: dict[str, str | None],
    *,
    while_active: bool = False,
) -> AlertWithTimeline:
    detail = {k: v for k, v in {**given, "role": user.role}.items() if v is not None}
    async with ctx.pool.acquire() as conn, conn.transaction():
        try:
            change = await record.take_step(
                conn,
                user.offices,
                alert_id,
                to,
                actor=user.subject,
                detail=detail,
                while_active=while_active,
            )
        except record.StepRefused as exc:
            raise ApiError(409, str(exc), exc.detail or None) from None
        if change is None:
            raise not_found(f"alert {alert_id}")
        await audit.record(conn, user, f"alert.{to}", f"alert:{alert_id}", detail)
        result = await _with_timeline(conn, change["alert"])
    await announce(ctx.redis, change)
    return result


async def _with_timeline(conn: Conn, alert: dict[str, Any]) -> AlertWithTimeline:
    events = [AlertEvent.model_validate(dict(e)) for e in await record.timeline(conn, alert["id"])]
    return AlertWithTimeline.model_validate({**alert, "timeline": events})
