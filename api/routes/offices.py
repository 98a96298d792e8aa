"""Offices (centre → city → county bureau → justice station) and the officers who work in
them. An office's kind is also the level its tokens decide at (api.auth.OFFICE_LEVELS)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.auth import OfficeManager, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import Name
from storage.repo import access as access_repo
from storage.repo import offices as offices_repo

router = APIRouter(tags=["offices"])


class OfficeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1)
    kind: Literal["center", "city", "county", "station"] = Field(
        description="monitoring centre (监控中心, decides nothing), city (市级社区矫正机构),"
        " county bureau (县级司法局) or justice station (司法所)"
    )
    parent: str | None = None
    head_officer: str | None = Field(
        None, description="the station head (所长) or bureau head escalations go to"
    )
    duty_phone: Name | None = Field(None, description="duty phone for SMS escalations")
    duty_email: Name | None = Field(None, description="duty mailbox for e-mail escalations")


class Office(OfficeIn):
    id: str


class OfficeList(BaseModel):
    items: list[Office]


class OfficerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1)
    office: str | None = None
    phone: Name | None = Field(None, description="for SMS alerts")
    email: Name | None = Field(None, description="for e-mail alerts")
    role: Name = Field("officer", description="officer, or head (所长) of their office")


class Officer(OfficerIn):
    id: str


class OfficerList(BaseModel):
    items: list[Officer]


@router.get("/offices", response_model=OfficeList)
async def list_offices(ctx: Ctx, user: User) -> OfficeList:
    """Every office, so the hierarchy can be shown; the head and duty contacts only of the
    caller's own offices."""
    async with ctx.pool.acquire() as conn:
        rows = await offices_repo.list_offices(conn)
    hidden = {"head_officer": None, "duty_phone": None, "duty_email": None}
    return OfficeList(
        items=[
            Office.model_validate(dict(r) if user.covers(r["id"]) else {**dict(r), **hidden})
            for r in rows
        ]
    )


@router.put("/offices/{office_id}", response_model=Office)
async def put_office(ctx: Ctx, user: OfficeManager, office_id: str, body: OfficeIn) -> Office:
    async with ctx.pool.acquire() as conn, conn.transaction():
        exists = await offices_repo.get_office(conn, office_id) is not None
        if (exists and not user.covers(office_id)) or not user.covers(body.parent):
            raise ApiError(403, "offices outside your own subtree cannot be changed")
        if body.parent is not None and body.parent in await access_repo.office_subtree(
            conn, office_id
        ):
            raise ApiError(422, f"office {body.parent!r} is below {office_id!r}: a cycle")
        row = await offices_repo.upsert_office(
            conn,
            office_id,
            body.name,
            body.kind,
            body.parent,
            body.head_officer,
            body.duty_phone,
            body.duty_email,
        )
        await audit.record(conn, user, "office.put", f"office:{office_id}", body.model_dump())
    return Office.model_validate(dict(row))


@router.get("/officers", response_model=OfficerList)
async def list_officers(ctx: Ctx, user: User) -> OfficerList:
    async with ctx.pool.acquire() as conn:
        rows = await offices_repo.list_officers(conn, user.offices)
    return OfficerList(items=[Officer.model_validate(dict(r)) for r in rows])


@router.put("/officers/{officer_id}", response_model=Officer)
async def put_officer(ctx: Ctx, user: OfficeManager, officer_id: str, body: OfficerIn) -> Officer:
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await offices_repo.get_officer(conn, officer_id)
        if current is not None and not user.covers(current["office"]):
            raise not_found(f"officer {officer_id!r}")
        if not user.covers(body.office):
            raise ApiError(403, f"office {body.office!r} is outside your offices")
        row = await offices_repo.upsert_officer(
            conn, officer_id, body.name, body.office, body.phone, body.role, body.email
        )
        await audit.record(conn, user, "officer.put", f"officer:{officer_id}", body.model_dump())
    return Officer.model_validate(dict(row))
