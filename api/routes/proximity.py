"""No-contact orders (禁止接触) and protected persons (被保护人): recorded, changed and ended
through the API as `fencewatch load` records them from a roster (docs/rules.md).

An operator may write only what concerns people of their own offices: every supervisee an
order names (before and after the change), the supervisee a protected person is protected
from. Someone outside them is answered as if they did not exist. Ending a protection
purges every copy of where the protected person was, in PostgreSQL
(storage.repo.proximity.purge_protected) and in Redis (ingest.forget; docs/security.md);
ending a no-contact order leaves its alerts as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.auth import Manager, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import LIST_MAX, Name, Text, UtcTime
from api.routes.supervisees import forget_protected, require_supervisee
from geofence.model import DeviceRef, NoContact, Protection
from ingest.forget import UNREACHABLE, allow
from ingest.osmand import ID_PATTERN as OSMAND_ID
from storage.db import Conn, Row
from storage.repo import proximity as proximity_repo

router = APIRouter(tags=["people near people"])

ID = r"^\S{1,200}$"


class NoContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: list[Name] = Field(
        min_length=2, max_length=LIST_MAX, description="supervisee ids; every two stay apart"
    )
    distance_m: float = Field(200.0, gt=0, le=50_000, description="how far apart, metres")
    confirm_s: int = Field(
        300, ge=30, le=86_400, description="how long surely within it before an alert"
    )
    note: Text | None = Field(None, description="kept in the audit log (e.g. the 禁止令's number)")

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.people)) != len(self.people):
            raise ValueError("people lists someone twice")
        return self


class NoContactOrder(BaseModel):
    id: str
    people: list[str]
    distance_m: float
    confirm_s: int
    updated_at: UtcTime


class NoContactList(BaseModel):
    items: list[NoContactOrder]


class PhoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID, description="the phone's device id")
    owntracks: str | None = Field(
        None, pattern=r"^[^/]+/[^/]+$", description="'<user>/<device>' of its OwnTracks topic"
    )
    osmand: str | None = Field(None, pattern=OSMAND_ID, description="the id Traccar Client sends")

    @model_validator(mode="after")
    def _reports(self) -> Self:
        if (self.owntracks is None) == (self.osmand is None):
            raise ValueError("the phone reports by OwnTracks or by OsmAnd: give one of the two")
        return self


class ProtectedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supervisee: str = Field(description="the supervisee the person is protected from")
    name: Name | None = Field(
        None, description="what officers call them (e.g. 王女士); gone when the protection ends"
    )
    device: PhoneIn
    distance_m: float = Field(500.0, gt=0, le=50_000, description="the moving exclusion zone")
    confirm_s: int = Field(60, ge=10, le=86_400)
    sms: str | None = Field(
        None,
        pattern=r"^\+?[0-9]{5,20}$",
        description="their number: warned at once, and again when the danger comes back",
    )
    keep_sms: bool = Field(
        False,
        description="keep the number registered now (readers see it masked, so cannot resend"
        " it); with `sms`, refused",
    )
    note: Text | None = Field(None, description="kept in the audit log")

    @model_validator(mode="after")
    def _one_number(self) -> Self:
        if self.keep_sms and self.sms is not None:
            raise ValueError("give sms or keep_sms, not both")
        return self


class ProtectedPerson(BaseModel):
    id: str
    supervisee: str
    name: str | None
    device: str
    owntracks: str | None
    osmand: str | None
    distance_m: float
    confirm_s: int
    sms: str | None = Field(description="their number, all but its last four digits hidden")
    updated_at: UtcTime


class ProtectedList(BaseModel):
    items: list[ProtectedPerson]


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, description="why it ended (e.g. 禁止令期满)")


class Ended(BaseModel):
    id: str
    alerts_purged: int = Field(
        0, description="alerts whose copy of the protected person's position was purged"
    )


async def _require_people(conn: Conn, user: Principal, people: Sequence[str]) -> None:
    """422 naming the first of `people` that is no supervisee the caller may see."""
    offices = await proximity_repo.supervisee_offices(conn, people)
    for person in people:
        if person not in offices or not user.covers(offices[person]):
            raise ApiError(422, f"no such supervisee {person!r} (or outside your offices)")


async def _covers_all(conn: Conn, user: Principal, people: Sequence[str]) -> bool:
    offices = await proximity_repo.supervisee_offices(conn, people)
    return all(user.covers(offices.get(p)) for p in people)


def _order(row: Row) -> NoContactOrder:
    return NoContactOrder.model_validate({**dict(row), "people": list(row["people"])})


def _masked(number: str | None) -> str | None:
    return None if number is None else "*" * max(0, len(number) - 4) + number[-4:]


def _protected(row: Row) -> ProtectedPerson:
    return ProtectedPerson.model_validate(
        {**dict(row), "device": row["device_id"], "sms": _masked(row["sms"])}
    )


# -- no-contact orders -----------------------------------------------------------------------


@router.get("/supervisees/{supervisee_id}/no-contact", response_model=NoContactList)
async def person_no_contact(ctx: Ctx, user: User, supervisee_id: str) -> NoContactList:
    """The no-contact orders naming the person."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await proximity_repo.no_contact_of(conn, supervisee_id)
    return NoContactList(items=[_order(r) for r in rows])


@router.put("/no-contact/{order_id}", response_model=NoContactOrder)
async def put_no_contact(
    ctx: Ctx, user: Manager, order_id: str, body: NoContactIn
) -> NoContactOrder:
    """Record or change a no-contact order: every two of `people` must stay `distance_m`
    apart. Every person named, now and before, must be of the caller's offices."""
    if not _id_ok(order_id):
        raise ApiError(422, "an order id is 1–200 printable characters, no spaces")
    async with ctx.pool.acquire() as conn, conn.transaction():
        before = await proximity_repo.get_no_contact(conn, order_id, lock=True)
        if before is not None and not await _covers_all(conn, user, before["people"]):
            raise not_found(f"no-contact order {order_id!r}")
        await _require_people(conn, user, body.people)
        order = NoContact(order_id, tuple(body.people), body.distance_m, body.confirm_s)
        await proximity_repo.upsert_no_contact(conn, [order])
        await audit.record(
            conn, user, "no_contact.put", f"no_contact:{order_id}", body.model_dump(mode="json")
        )
        row = await proximity_repo.get_no_contact(conn, order_id)
    assert row is not None
    await ctx.rules_changed(sorted({*body.people, *(before["people"] if before else ())}))
    return _order(row)


@router.post("/no-contact/{order_id}/end", response_model=Ended)
async def end_no_contact(ctx: Ctx, user: Manager, order_id: str, body: EndIn) -> Ended:
    """End the order: its people are no longer compared. Its alerts stay as they are."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await proximity_repo.get_no_contact(conn, order_id, lock=True)
        if row is None or not await _covers_all(conn, user, row["people"]):
            raise not_found(f"no-contact order {order_id!r}")
        await proximity_repo.end_no_contact(conn, order_id)
        detail = {"reason": body.reason, "people": list(row["people"])}
        await audit.record(conn, user, "no_contact.end", f"no_contact:{order_id}", detail)
    await ctx.rules_changed(sorted(row["people"]))
    return Ended(id=order_id, alerts_purged=0)


# -- protected persons -----------------------------------------------------------------------


@router.get("/supervisees/{supervisee_id}/protected", response_model=ProtectedList)
async def person_protected(ctx: Ctx, user: User, supervisee_id: str) -> ProtectedList:
    """The people protected from the supervisee: their phones and distances, never where
    they are."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await proximity_repo.protected_of(conn, supervisee_id)
    return ProtectedList(items=[_protected(r) for r in rows])


@router.put("/protected/{protection_id}", response_model=ProtectedPerson)
async def put_protected(
    ctx: Ctx, user: Manager, protection_id: str, body: ProtectedIn
) -> ProtectedPerson:
    """Register a protected person, or replace their registration (a new phone, distance or
    number; `keep_sms` keeps the number). The phone may be no supervisee's device, and no
    other protected person's."""
    if not _id_ok(protection_id):
        raise ApiError(422, "a protection id is 1–200 printable characters, no spaces")
    phone = DeviceRef(
        body.device.id, "phone", owntracks=body.device.owntracks, osmand=body.device.osmand
    )
    async with ctx.pool.acquire() as conn, conn.transaction():
        before = await proximity_repo.get_protected(conn, protection_id, lock=True)
        if before is not None and not await _covers_all(conn, user, [before["supervisee"]]):
            raise not_found(f"protected person {protection_id!r}")
        await _require_people(conn, user, [body.supervisee])
        if await proximity_repo.devices_in_use(conn, [phone]):
            raise ApiError(
                409,
                f"phone {phone.id!r} is (or reports as) a supervisee's device"
                " — 该设备属于社区矫正对象",
            )
        sms = before["sms"] if body.keep_sms and before is not None else body.sms
        protection = Protection(
            protection_id, body.supervisee, phone, body.distance_m, body.confirm_s, sms
        )
        try:
            async with conn.transaction():
                await proximity_repo.upsert_protected(conn, [protection])
            await proximity_repo.name_protected(conn, protection_id, body.name)
        except asyncpg.UniqueViolationError:
            raise ApiError(
                409,
                f"phone {phone.id!r} (or its OwnTracks/OsmAnd id) is another protected person's",
            ) from None
        try:
            # Registered again after an end: their phone's sightings are taken again.
            await allow(ctx.redis, protection_id)
        except UNREACHABLE as exc:
            raise ApiError(503, f"Redis unreachable ({exc}): not registered, try again") from None
        # Their number and name are kept out of the audit log, which outlives the protection,
        # as they are out of the alerts.
        detail = body.model_dump(mode="json", exclude={"sms", "name"}) | {
            "sms": sms is not None,
            "name": body.name is not None,
        }
        await audit.record(
            conn,
            user,
            "protected.put",
            f"protected:{protection_id}",
            detail,
            supervisee=body.supervisee,
        )
        row = await proximity_repo.get_protected(conn, protection_id)
    assert row is not None
    await ctx.rules_changed(sorted({body.supervisee, *([before["supervisee"]] if before else [])}))
    return _protected(row)


@router.post("/protected/{protection_id}/end", response_model=Ended)
async def end_protected(ctx: Ctx, user: Manager, protection_id: str, body: EndIn) -> Ended:
    """End the protection (the order has ended, or the person no longer wants it): the
    person and their phone go, and every copy of where they were with them."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await proximity_repo.get_protected(conn, protection_id, lock=True)
        if row is None or not await _covers_all(conn, user, [row["supervisee"]]):
            raise not_found(f"protected person {protection_id!r}")
        purged = await proximity_repo.purge_protected(conn, protection_id)
        await forget_protected(ctx, [protection_id])
        detail = {"reason": body.reason, "alerts": purged}
        await audit.record(
            conn,
            user,
            "protected.purge",
            f"protected:{protection_id}",
            detail,
            supervisee=row["supervisee"],
        )
    await ctx.rules_changed([row["supervisee"]])
    return Ended(id=protection_id, alerts_purged=purged)


def _id_ok(value: str) -> bool:
    """1–200 printable characters, no spaces: ids join the watcher's keys (geofence.together)."""
    return 0 < len(value) <= 200 and value.isprintable() and not any(c.isspace() for c in value)
