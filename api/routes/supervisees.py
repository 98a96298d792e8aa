"""Supervisees (社区矫正对象): who they are, which office has them, and their zones."""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import Manager, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import LIST_MAX, Name, UtcTime
from ingest.forget import UNREACHABLE, forget
from storage.db import Conn, Row
from storage.repo import people as people_repo
from storage.repo import proximity as proximity_repo
from storage.repo import zones as zones_repo

router = APIRouter(tags=["supervisees"])


async def forget_protected(ctx: Ctx, protections: list[str]) -> None:
    """Where the protected persons of `protections` were, out of Redis too (ingest.forget),
    before the transaction ending them commits: with Redis unreachable nothing is ended."""
    try:
        await forget(ctx.redis, protections)
    except UNREACHABLE as exc:
        raise ApiError(
            503, f"Redis unreachable ({exc}): the protection is not ended, try again"
        ) from None


class PlaceIn(BaseModel):
    """A place drawn as a circle (WGS-84), where no zone is."""

    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(100.0, ge=10, le=5000)
    name: Name = ""


class SuperviseeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""
    office: str | None = Field(None, description="the justice station (司法所) in charge")
    officer: str | None = None
    level: Literal["strict", "normal", "lenient"] = Field("normal", description="严管/普管/宽管")
    jurisdiction: list[Name] = Field(
        [], max_length=LIST_MAX, description="jurisdiction zone ids: the 执行地"
    )
    exclusion: list[Name] = Field(
        [], max_length=LIST_MAX, description="exclusion zone ids (禁止令)"
    )
    home: str | None = Field(None, description="home zone id (curfew)")
    workplace: PlaceIn | Name | None = Field(
        None,
        description="where the person works (工作单位): a zone id or a place; co-workers"
        " there are no gathering (聚集)",
    )
    term_start: date | None = None
    term_end: date | None = None
    status: Literal["active", "released"] = "active"
    phone: str | None = Field(
        None,
        pattern=r"^\+?[0-9]{5,20}$",
        description="the person's own mobile number: check-in (定位签到) requests by SMS",
    )

    @model_validator(mode="after")
    def _term_in_order(self) -> Self:
        if self.term_start and self.term_end and self.term_end < self.term_start:
            raise ValueError("term_end is before term_start")
        return self


class Supervisee(SuperviseeIn):
    model_config = ConfigDict(extra="ignore")

    id: str
    devices: list[str] = Field(description="devices currently assigned")
    updated_at: UtcTime


class SuperviseeList(BaseModel):
    items: list[Supervisee]


async def require_supervisee(conn: Conn, user: Principal, supervisee: str) -> Row:
    """The supervisee if the caller's offices include them; otherwise 404, so a scoped
    caller cannot learn who exists elsewhere."""
    row = await people_repo.get_supervisee(conn, user.offices, supervisee)
    if row is None:
        raise not_found(f"supervisee {supervisee!r}")
    return row


@router.get("/supervisees", response_model=SuperviseeList)
async def list_supervisees(ctx: Ctx, user: User, office: str | None = None) -> SuperviseeList:
    async with ctx.pool.acquire() as conn:
        rows = await people_repo.list_supervisees(conn, user.offices, office)
    return SuperviseeList(items=[Supervisee.model_validate(dict(r)) for r in rows])


@router.get("/supervisees/{supervisee_id}", response_model=Supervisee)
async def get_supervisee(ctx: Ctx, user: User, supervisee_id: str) -> Supervisee:
    async with ctx.pool.acquire() as conn:
        return Supervisee.model_validate(dict(await require_supervisee(conn, user, supervisee_id)))


@router.put("/supervisees/{supervisee_id}", response_model=Supervisee)
async def put_supervisee(
    ctx: Ctx, user: Manager, supervisee_id: str, body: SuperviseeIn
) -> Supervisee:
    """Create or replace. Zone ids must exist, be of the matching kind and be zones the
    caller may read."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        exists, office = await people_repo.supervisee_office(conn, supervisee_id)
        if exists and not user.covers(office):
            raise not_found(f"supervisee {supervisee_id!r}")
        if not user.covers(body.office):
            raise ApiError(403, f"office {body.office!r} is outside your offices")
        errors = await zones_repo.zone_reference_errors(
            conn,
            user.offices,
            jurisdiction=body.jurisdiction,
            exclusion=body.exclusion,
            home=body.home,
            workplace=body.workplace if isinstance(body.workplace, str) else None,
        )
        if errors:
            raise ApiError(422, "; ".join(errors), errors)
        await people_repo.put_supervisee(conn, supervisee_id, **body.model_dump())
        await audit.record(
            conn,
            user,
            "supervisee.put",
            f"supervisee:{supervisee_id}",
            body.model_dump(mode="json"),
        )
        if body.status == "released":
            # The order is over: so is every protection from them, and with it every copy
            # of where the protected person was (docs/security.md).
            ended = await proximity_repo.purge_protected_of(conn, supervisee_id)
            for protection, alerts in ended.items():
                detail = {"protected": protection, "alerts": alerts}
                await audit.record(
                    conn, user, "protected.purge", f"supervisee:{supervisee_id}", detail
                )
            await forget_protected(ctx, list(ended))
        row = await require_supervisee(conn, user, supervisee_id)
    await ctx.rules_changed([supervisee_id])
    return Supervisee.model_validate(dict(row))
