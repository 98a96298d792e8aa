"""Zones as GeoJSON: jurisdiction (执行地), exclusion (禁止令) and home (curfew) areas.

Imports take boundary files as they come (DataV/GeoAtlas in GCJ-02 included): each
feature is converted to WGS-84 once, here, off the event loop, and the feature as received
is kept. Limits (vertices, radius, extent) are geofence.limits'.

Scope: jurisdictions are public geography; an exclusion or home zone locates a victim or a
supervised person, so a scoped caller reads only those of its own people, and every read
is audited like a read of location data. A scoped caller changes or deletes a zone only
when everyone whose rules use it is in its offices.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.auth import Manager, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from geofence.model import ZoneDef
from geofence.zones import ZoneError, parse_feature, parse_feature_collection
from storage.db import Conn, Row
from storage.repo import zones as zones_repo

router = APIRouter(tags=["zones"])

Kind = Literal["jurisdiction", "exclusion", "home"]
Crs = Literal["wgs84", "gcj02"]


class Window(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    days: list[int] = Field(description="ISO weekdays (1 = Monday) on which the window starts")
    from_: str = Field(alias="from", description="HH:MM local time")
    to: str = Field(description="HH:MM; at or before `from` means past midnight")


class ZoneProperties(BaseModel):
    id: str
    kind: Kind
    name: str
    crs: Crs = Field(description="the CRS it was imported in; the geometry is always WGS-84")
    schedule: list[Window] = Field(description="when the zone applies; empty = always")
    radius: float | None = Field(description="metres, for a circle given as a Point")


class ZoneFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: dict[str, Any] = Field(description="GeoJSON geometry, WGS-84")
    properties: ZoneProperties


class ZoneCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[ZoneFeature]


class FeatureIn(BaseModel):
    """A GeoJSON Feature; properties may carry kind, name, crs, schedule and radius."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    geometry: dict[str, Any] | None
    properties: dict[str, Any] | None = None


class FeatureCollectionIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]


class Imported(BaseModel):
    ids: list[str]


def _feature(row: Row) -> ZoneFeature:
    return ZoneFeature(
        geometry=row["geometry"], properties=ZoneProperties.model_validate(dict(row))
    )


@router.get("/zones", response_model=ZoneCollection)
async def list_zones(ctx: Ctx, user: User, kind: Kind | None = None) -> ZoneCollection:
    async with ctx.pool.acquire() as conn, conn.transaction():
        rows = await zones_repo.list_zones(conn, user.offices, kind)
        detail = {"kind": kind, "count": len(rows), "ids": [r["id"] for r in rows]}
        await audit.record(conn, user, "location.zones", "zones", detail)
    return ZoneCollection(features=[_feature(r) for r in rows])


@router.get("/zones/{zone_id}", response_model=ZoneFeature)
async def get_zone(ctx: Ctx, user: User, zone_id: str) -> ZoneFeature:
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await zones_repo.get_zone(conn, user.offices, zone_id)
        if row is None:
            raise not_found(f"zone {zone_id!r}")
        await audit.record(conn, user, "location.zone", f"zone:{zone_id}", {"kind": row["kind"]})
    return _feature(row)


@router.post("/zones/import", response_model=Imported)
async def import_zones(
    ctx: Ctx,
    user: Manager,
    body: FeatureCollectionIn,
    kind: Annotated[
        Kind | None, Query(description="for features without a `kind` property")
    ] = None,
    crs: Annotated[Crs, Query(description="for features without a `crs` property")] = "wgs84",
) -> Imported:
    """Upsert every feature by id (properties.id, the feature's id, or a DataV adcode)."""
    doc = body.model_dump()
    try:
        # Thousands of vertices to repair and convert: not on the loop /healthz answers on.
        zones = await asyncio.to_thread(
            parse_feature_collection, doc, default_kind=kind, default_crs=crs
        )
    except ZoneError as exc:
        raise ApiError(422, str(exc)) from None
    return Imported(ids=await _store(ctx, user, list(zip(zones, doc["features"], strict=True))))


@router.put("/zones/{zone_id}", response_model=ZoneFeature)
async def put_zone(ctx: Ctx, user: Manager, zone_id: str, body: FeatureIn) -> ZoneFeature:
    feature = body.model_dump()
    properties = feature["properties"] or {}
    if str(properties.get("id", zone_id)) != zone_id:
        raise ApiError(
            422, f"properties.id {properties['id']!r} differs from the path's {zone_id!r}"
        )
    feature["properties"] = {**properties, "id": zone_id}
    try:
        zone = await asyncio.to_thread(parse_feature, feature)
    except ZoneError as exc:
        raise ApiError(422, str(exc)) from None
    await _store(ctx, user, [(zone, feature)])
    async with ctx.pool.acquire() as conn:
        row = await zones_repo.get_zone(conn, None, zone_id)
    assert row is not None
    return _feature(row)


@router.delete("/zones/{zone_id}", status_code=204)
async def delete_zone(ctx: Ctx, user: Manager, zone_id: str) -> None:
    """Refused while a supervisee or a current leave still names the zone."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _check_ours(conn, user, zone_id)
        users = await zones_repo.zone_references(conn, zone_id)
        if users:
            named = ", ".join(f"{who} ({role})" for who, role in users)
            raise ApiError(409, f"zone {zone_id!r} is still used by {named}", users)
        await zones_repo.delete_zone(conn, zone_id)
        await audit.record(conn, user, "zone.delete", f"zone:{zone_id}")


async def _store(
    ctx: Ctx, user: Principal, zones: list[tuple[ZoneDef, dict[str, Any]]]
) -> list[str]:
    ids = [zone.id for zone, _ in zones]
    async with ctx.pool.acquire() as conn, conn.transaction():
        for zone, source in zones:
            await _check_writable(conn, user, zone)
            await zones_repo.upsert_zone(conn, zone, source, user.office)
            await audit.record(
                conn,
                user,
                "zone.put",
                f"zone:{zone.id}",
                {"kind": zone.kind, "crs": zone.source_crs},
            )
        affected = await zones_repo.supervisees_using_zones(conn, ids)
    if affected:
        await ctx.rules_changed(affected)
    return ids


async def _check_ours(conn: Conn, user: Principal, zone_id: str) -> None:
    """404 unless the caller may read the zone; 403 unless everyone whose rules use it is
    in the caller's offices (or, while nobody uses it, its offices made it): reading a zone
    — a public boundary, say — is no leave to change it under other offices' people."""
    if await zones_repo.get_zone(conn, user.offices, zone_id) is None:
        raise not_found(f"zone {zone_id!r}")
    if user.offices is None:
        return
    users = await zones_repo.zone_offices(conn, zone_id) or {
        await zones_repo.zone_owner(conn, zone_id)
    }
    others = sorted(o or "the centre" for o in users if not user.covers(o))
    if others:
        raise ApiError(
            403,
            f"zone {zone_id!r} belongs to offices outside yours ({', '.join(others)}): only"
            " a manager covering all of them may change it",
        )


async def _check_writable(conn: Conn, user: Principal, zone: ZoneDef) -> None:
    if not await zones_repo.zone_exists(conn, zone.id):
        return
    await _check_ours(conn, user, zone.id)
    clashes = [
        f"{who} ({role})"
        for who, role in await zones_repo.zone_references(conn, zone.id)
        if role not in (zone.kind, "destination")
    ]
    if clashes:
        raise ApiError(
            409, f"zone {zone.id!r} cannot become kind {zone.kind}: {', '.join(clashes)} use it"
        )
