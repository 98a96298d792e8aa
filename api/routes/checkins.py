"""Check-ins (定位签到, supervision.checkins): schedules by supervision level and per person,
a person's check-in calendar with its rate, and the supervision app's signed face
verification results (the verdict only; never an image)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, Self

import msgspec
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts.feed import announce
from alerts.signed import SIGNATURE_V2_HEADER, TIMESTAMP_HEADER, verify
from api import audit
from api.auth import AlertWorker, HeightenedManager, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import LIST_MAX, UtcTime
from api.routes.supervisees import require_supervisee
from storage.db import Conn, Row
from supervision import checkin_rules, checkins

router = APIRouter(tags=["check-ins"])

CheckinId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Level = Literal["strict", "normal", "lenient"]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    times: list[str] = Field(
        [], max_length=LIST_MAX, description="daily check-ins at these local times, HH:MM"
    )
    random_per_day: int = Field(0, ge=0, le=24, description="more, at random waking minutes")
    waking_from: str = Field("08:00", description="waking hours (local HH:MM) for random ones")
    waking_to: str = "21:00"
    deadline_s: int = Field(
        checkin_rules.DEFAULT_DEADLINE_S, ge=60, le=86_400, description="time to answer, seconds"
    )
    face: bool = Field(False, description="a face verification by the supervision app is wanted")

    @model_validator(mode="after")
    def _times(self) -> Self:
        for value in (*self.times, self.waking_from, self.waking_to):
            checkin_rules.hhmm(value)
        if checkin_rules.hhmm(self.waking_to) <= checkin_rules.hhmm(self.waking_from):
            raise ValueError("waking_to must be after waking_from")
        return self


class Schedule(ScheduleIn):
    scope: str = Field(description="level:<level> or supervisee:<id>")
    updated_by: str | None
    updated_at: UtcTime


class Checkin(BaseModel):
    id: int
    supervisee: str
    due_at: UtcTime
    deadline_at: UtcTime
    kind: Literal["fixed", "random"]
    face: bool
    sent_via: list[str] = Field(description="owntracks (reportLocation), sms")
    status: Literal["pending", "answered", "missed"]
    reason: str | None = Field(description="missed: no_fix, poor_fix, no_face or face_failed")
    fix: dict[str, object] | None = Field(description="the phone's fix that answered (or not)")
    face_verdict: Literal["pass", "fail"] | None
    alert: int | None


class CheckinCalendar(BaseModel):
    items: list[Checkin]
    answered: int
    missed: int
    pending: int
    rate: float | None = Field(description="answered / (answered + missed); null: none settled")


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["pass", "fail"]
    verified_at: datetime | None = None
    app: str | None = Field(None, max_length=100)


def _checkin(r: Row) -> Checkin:
    fix = (
        {
            "device": r["fix_device"],
            "ts": r["fix_ts"].isoformat(),
            "lat": r["fix_lat"],
            "lon": r["fix_lon"],
            "acc": r["fix_acc"],
        }
        if r["fix_device"]
        else None
    )
    return Checkin(
        id=r["id"],
        supervisee=r["supervisee_id"],
        due_at=r["due_at"],
        deadline_at=r["deadline_at"],
        kind=r["kind"],
        face=r["face"],
        sent_via=list(r["sent_via"]),
        status=r["status"],
        reason=r["reason"],
        fix=fix,
        face_verdict=r["face_verdict"],
        alert=r["alert_id"],
    )


async def _put(conn: Conn, scope: str, body: ScheduleIn, who: str) -> Schedule:
    schedule = checkin_rules.Schedule(**{**body.model_dump(), "times": tuple(body.times)})
    row = await checkins.put_schedule(conn, scope, schedule, who)
    return Schedule.model_validate(dict(row))


async def _get(conn: Conn, scope: str) -> Schedule:
    row = await conn.fetchrow("SELECT * FROM checkin_schedules WHERE scope = $1", scope)
    if row is None:
        raise not_found(f"check-in schedule {scope!r}")
    return Schedule.model_validate(dict(row))


@router.put("/checkin-schedules/levels/{level}", response_model=Schedule)
async def put_level_schedule(
    ctx: Ctx, user: HeightenedManager, level: Level, body: ScheduleIn
) -> Schedule:
    """The check-ins of everyone at this supervision level without a schedule of their own."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        found = await _put(conn, f"level:{level}", body, user.subject)
        await audit.record(conn, user, "checkin.schedule", f"level:{level}", body.model_dump())
    return found


@router.get("/checkin-schedules/levels/{level}", response_model=Schedule)
async def get_level_schedule(ctx: Ctx, user: User, level: Level) -> Schedule:
    async with ctx.pool.acquire() as conn:
        return await _get(conn, f"level:{level}")


@router.put("/supervisees/{supervisee_id}/checkin-schedule", response_model=Schedule)
async def put_schedule(
    ctx: Ctx, user: AlertWorker, supervisee_id: str, body: ScheduleIn
) -> Schedule:
    """The person's own check-ins, replacing their level's."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, supervisee_id)
        found = await _put(conn, f"supervisee:{supervisee_id}", body, user.subject)
        await audit.record(
            conn, user, "checkin.schedule", f"supervisee:{supervisee_id}", body.model_dump()
        )
    return found


@router.get("/supervisees/{supervisee_id}/checkin-schedule", response_model=Schedule)
async def get_schedule(ctx: Ctx, user: User, supervisee_id: str) -> Schedule:
    """The person's own schedule (404: they follow their level's)."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        return await _get(conn, f"supervisee:{supervisee_id}")


@router.get("/supervisees/{supervisee_id}/checkins", response_model=CheckinCalendar)
async def list_checkins(
    ctx: Ctx,
    user: User,
    supervisee_id: str,
    days: Annotated[int, Query(ge=1, le=92, description="this many days back")] = 7,
) -> CheckinCalendar:
    """The person's check-in calendar, newest first, with the rate answered."""
    since = datetime.now(UTC) - timedelta(days=days)
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await conn.fetch(
            "SELECT * FROM checkins WHERE supervisee_id = $1 AND due_at >= $2 ORDER BY due_at DESC",
            supervisee_id,
            since,
        )
        await audit.record(conn, user, "checkin.read", f"supervisee:{supervisee_id}")
    items = [_checkin(r) for r in rows]
    count = {s: sum(1 for c in items if c.status == s) for s in ("answered", "missed", "pending")}
    settled = count["answered"] + count["missed"]
    return CheckinCalendar(
        items=items, rate=round(count["answered"] / settled, 3) if settled else None, **count
    )


@router.post("/checkins/{checkin_id}", response_model=Checkin)
async def verify_checkin(ctx: Ctx, request: Request, checkin_id: CheckinId) -> Checkin:
    """A face verification result from the supervision app, signed like the webhook
    (`X-Fencewatch-Signature-V2: t=<unix s>,sha256=<HMAC-SHA256 of "<t>.<body>">` with
    FENCEWATCH_CHECKIN_SECRET, within 5 minutes). Only the verdict is kept. A pass with a
    good fix answers the check-in; a fail misses it at once (checkin_missed)."""
    secret = ctx.settings.checkin_secret
    body = await request.body()
    if not secret:
        # Nothing can be verified, so nothing is accepted.
        raise ApiError(
            401, "check-in verification is not configured here (FENCEWATCH_CHECKIN_SECRET)"
        )
    if not verify(body, request.headers, secret):
        raise ApiError(
            401,
            f"bad or missing signature: {SIGNATURE_V2_HEADER} over '<{TIMESTAMP_HEADER}>.<body>'"
            " with the check-in secret, signed within 5 minutes",
        )
    try:
        verification = Verification.model_validate(msgspec.json.decode(body))
    except (msgspec.DecodeError, ValidationError) as exc:
        raise ApiError(422, f"expected {{'verdict': 'pass'|'fail'}}: {exc}") from None
    now = datetime.now(UTC)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM checkins WHERE id = $1 FOR UPDATE", checkin_id)
        if row is None:
            raise not_found(f"check-in {checkin_id}")
        if row["status"] != "pending":
            raise ApiError(409, f"check-in {checkin_id} is already {row['status']}")
        await conn.execute(
            "UPDATE checkins SET face_verdict = $2, face_at = $3 WHERE id = $1",
            checkin_id,
            verification.verdict,
            verification.verified_at or now,
        )
        await checkins.settle_one(
            conn, {**dict(row), "face_verdict": verification.verdict}, now, ctx.timezone
        )
        row = await conn.fetchrow("SELECT * FROM checkins WHERE id = $1", checkin_id)
        changes = await checkins.raised_at(conn, now)
    for change in changes:
        await announce(ctx.redis, change)
    assert row is not None
    return _checkin(row)
