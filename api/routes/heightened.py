"""Heightened periods (重大节假日、重要会议期间): between two times, stricter thresholds for
everyone — e.g. confirm a breach on fewer fixes, report a silent device sooner.

`policy` overrides fields of geofence.policy.Policy; it is checked exactly as a roster's
`heightened` entries are (fencewatch.scenario.parse_heightened), so what the API accepts
the engine can use. Periods apply service-wide: the engine's roster has no office on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import HeightenedManager, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import UtcTime
from fencewatch.scenario import ScenarioError, parse_heightened
from storage import repo
from storage.repo import Row

router = APIRouter(tags=["heightened periods"])

_POLICY_HELP = (
    'geofence.policy.Policy fields to override, e.g. {"confirm_fixes": 2, "offline_s": 600}'
)


class HeightenedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field("", description="e.g. 春节, 全国两会")
    start: AwareDatetime = Field(alias="from", description="ISO-8601 with offset")
    end: AwareDatetime = Field(alias="to", description="ISO-8601 with offset")
    policy: dict[str, Any] = Field({}, description=_POLICY_HELP)

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
    active: bool = Field(description="in force now")
    updated_by: str | None
    updated_at: UtcTime


class HeightenedList(BaseModel):
    items: list[Heightened]


def _period(row: Row) -> Heightened:
    now = datetime.now(UTC)
    return Heightened.model_validate({**dict(row), "active": row["from"] <= now < row["to"]})


def _check_policy(body: HeightenedIn) -> None:
    """The roster's validation of a period (spec 4.2 `heightened`), reused."""
    item = {
        "from": body.start.isoformat(),
        "to": body.end.isoformat(),
        "name": body.name,
        "policy": body.policy,
    }
    try:
        parse_heightened([item])
    except ScenarioError as exc:
        raise ApiError(422, f"policy: {str(exc).removeprefix('heightened 0: ')}") from None


@router.get("/heightened", response_model=HeightenedList)
async def list_periods(ctx: Ctx, user: User) -> HeightenedList:
    async with ctx.pool.acquire() as conn:
        rows = await repo.list_heightened(conn)
    return HeightenedList(items=[_period(r) for r in rows])


@router.get("/heightened/{period_id}", response_model=Heightened)
async def get_period(ctx: Ctx, user: User, period_id: str) -> Heightened:
    async with ctx.pool.acquire() as conn:
        row = await repo.get_heightened(conn, period_id)
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
        row = await repo.put_heightened(
            conn,
            period_id,
            name=body.name,
            starts=body.start,
            ends=body.end,
            policy=body.policy,
            updated_by=user.subject,
        )
        await audit.record(
            conn,
            user,
            "heightened.put",
            f"heightened:{period_id}",
            body.model_dump(mode="json", by_alias=True),
        )
    await ctx.rules_changed(None)
    return _period(row)


@router.delete("/heightened/{period_id}", status_code=204)
async def delete_period(ctx: Ctx, user: HeightenedManager, period_id: str) -> None:
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await repo.delete_heightened(conn, period_id):
            raise not_found(f"heightened period {period_id!r}")
        await audit.record(conn, user, "heightened.delete", f"heightened:{period_id}")
    await ctx.rules_changed(None)
