"""Devices (tags and phones) and who wears them; the assignment history is never rewritten.

A tag (电子定位装置) is fitted only while the person has a monitoring order in force
(社区矫正法 Art. 29, api.routes.orders); a phone used for 信息化核查 needs none."""

from __future__ import annotations

from typing import Literal, Self
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import Manager, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import UtcTime
from api.routes.orders import today
from api.routes.supervisees import require_supervisee
from geofence.model import DeviceRef
from ingest.jt808 import terminals
from ingest.osmand import ID_PATTERN as OSMAND_ID
from storage.db import Conn
from storage.repo import orders as orders_repo
from storage.repo import people as people_repo

router = APIRouter(tags=["devices"])


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["tag", "phone"] = "tag"
    owntracks: str | None = Field(
        None,
        pattern=r"^[^/]+/[^/]+$",
        description="'<user>/<device>' of a phone's OwnTracks topic owntracks/<user>/<device>",
    )
    osmand: str | None = Field(
        None,
        pattern=OSMAND_ID,
        description="the id a phone running Traccar Client (OsmAnd protocol over HTTP) sends",
    )
    jt808: str | None = Field(
        None,
        pattern=terminals.ID_PATTERN,
        description="a JT/T 808 terminal's phone number (终端手机号), what it connects to the"
        " gateway with; leading zeros are dropped",
    )
    crs: Literal["wgs84", "gcj02"] = Field(
        "wgs84", description="what the device's positions are in, where its protocol does not say"
    )
    model: str | None = Field(None, description="left out: keeps the stored model")

    @model_validator(mode="after")
    def _owntracks_only_on_phones(self) -> Self:
        if self.owntracks is not None and self.kind != "phone":
            raise ValueError("only a phone can have an OwnTracks mapping")
        if self.osmand is not None and self.kind != "phone":
            raise ValueError("only a phone can have an OsmAnd id")
        return self


class Device(DeviceIn):
    model_config = ConfigDict(extra="ignore")

    id: str
    supervisee: str | None = Field(description="current wearer")
    since: UtcTime | None = Field(description="start of the current assignment")


class DeviceList(BaseModel):
    items: list[Device]


class Assign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    supervisee: str


class Assignment(BaseModel):
    device: str
    kind: str
    since: UtcTime
    until: UtcTime | None = Field(description="null while the assignment is current")


class AssignmentHistory(BaseModel):
    items: list[Assignment]


async def require_order(conn: Conn, supervisee: str, tz: ZoneInfo) -> None:
    """422 unless an order in force allows fitting `supervisee` with a tag (today in the
    service's time zone `tz`). Holds the person until the transaction ends, so an order
    removed meanwhile cannot be missed."""
    await people_repo.lock_supervisee(conn, supervisee)
    if not await orders_repo.has_active_order(conn, supervisee, today(tz)):
        message = (
            f"supervisee {supervisee!r} has no monitoring order in force: a tag may be fitted"
            " only under one (社区矫正法 Art. 29); a phone (信息化核查) needs none"
        )
        message_zh = "该社区矫正对象没有有效的使用电子定位装置决定，不得使用电子定位装置"
        raise ApiError(
            422, f"{message} — {message_zh}", {"message": message, "message_zh": message_zh}
        )


@router.get("/devices", response_model=DeviceList)
async def list_devices(ctx: Ctx, user: User) -> DeviceList:
    async with ctx.pool.acquire() as conn:
        rows = await people_repo.list_devices(conn, user.offices)
    return DeviceList(items=[Device.model_validate(dict(r)) for r in rows])


@router.get("/devices/{device_id}", response_model=Device)
async def get_device(ctx: Ctx, user: User, device_id: str) -> Device:
    async with ctx.pool.acquire() as conn:
        row = await people_repo.get_device(conn, user.offices, device_id)
    if row is None:
        raise not_found(f"device {device_id!r}")
    return Device.model_validate(dict(row))


@router.put("/devices/{device_id}", response_model=Device)
async def put_device(ctx: Ctx, user: Manager, device_id: str, body: DeviceIn) -> Device:
    async with ctx.pool.acquire() as conn, conn.transaction():
        before = await people_repo.get_device(conn, None, device_id)
        if before is not None and not user.covers(before["office"]):
            raise not_found(f"device {device_id!r}")
        wearer = before["supervisee"] if before is not None else None
        was_phone = before is not None and before["kind"] == "phone"
        if wearer and was_phone and body.kind == "tag":
            # A worn phone re-registered as a tag needs an order like any tag.
            await require_order(conn, wearer, ctx.timezone)
        jt808 = None if body.jt808 is None else terminals.number(body.jt808)
        device = DeviceRef(device_id, body.kind, body.owntracks, body.osmand, jt808, body.crs)
        await people_repo.upsert_device(conn, device, body.model)
        await audit.record(conn, user, "device.put", f"device:{device_id}", body.model_dump())
        row = await people_repo.get_device(conn, None, device_id)
    assert row is not None
    if row["supervisee"] is not None:
        await ctx.rules_changed([row["supervisee"]])
    return Device.model_validate(dict(row))


@router.post("/devices/{device_id}/assign", response_model=Device)
async def assign(ctx: Ctx, user: Manager, device_id: str, body: Assign) -> Device:
    """Fit the device to a supervisee; whoever wore it before is unassigned."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, body.supervisee)
        device = await people_repo.get_device(conn, None, device_id)
        # A scoped caller may fit a device from stock but not take one off another office's person.
        if device is None or (device["supervisee"] and not user.covers(device["office"])):
            raise not_found(f"device {device_id!r}")
        if device["kind"] == "tag" and device["supervisee"] != body.supervisee:
            await require_order(conn, body.supervisee, ctx.timezone)
        previous, changed = await people_repo.assign_device(conn, device_id, body.supervisee)
        if changed:
            await audit.record(
                conn,
                user,
                "device.assign",
                f"device:{device_id}",
                {"supervisee": body.supervisee, "previous": previous},
            )
        row = await people_repo.get_device(conn, None, device_id)
    assert row is not None
    if changed:
        await ctx.rules_changed([s for s in (body.supervisee, previous) if s])
    return Device.model_validate(dict(row))


@router.post("/devices/{device_id}/unassign", response_model=Device)
async def unassign(ctx: Ctx, user: Manager, device_id: str) -> Device:
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await people_repo.get_device(conn, user.offices, device_id)
        if row is None:
            raise not_found(f"device {device_id!r}")
        wearer = await people_repo.unassign_device(conn, device_id)
        if wearer is None:
            raise ApiError(409, f"device {device_id!r} is not assigned to anyone")
        await audit.record(
            conn, user, "device.unassign", f"device:{device_id}", {"supervisee": wearer}
        )
        row = await people_repo.get_device(conn, None, device_id)
    assert row is not None
    await ctx.rules_changed([wearer])
    return Device.model_validate(dict(row))


@router.get("/supervisees/{supervisee_id}/devices", response_model=AssignmentHistory)
async def device_history(ctx: Ctx, user: User, supervisee_id: str) -> AssignmentHistory:
    """Every device the person has worn, newest first."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await people_repo.device_history(conn, supervisee_id)
    return AssignmentHistory(items=[Assignment.model_validate(dict(r)) for r in rows])
