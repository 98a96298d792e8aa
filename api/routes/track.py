"""Location data: a person's track (from both storage tiers, storage.history) and everyone's
latest position. Every read is audited (社区矫正法 Art. 29: location data is for community
corrections only)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

import msgspec
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from alerts.feed import LATEST
from api import audit
from api.auth import User
from api.context import Ctx
from api.errors import ApiError
from api.fields import Since, Until, UtcTime
from api.routes.supervisees import require_supervisee
from fencewatch.timefmt import iso_time
from geofence.model import Quality
from storage import history
from storage.archive import Archive
from storage.repo import people as people_repo
from storage.repo import tracks as tracks_repo

log = logging.getLogger(__name__)
router = APIRouter(tags=["location"])

MAX_RANGE = timedelta(days=31)
MAX_FIXES = 50_000


class TrackProperties(BaseModel):
    ts: UtcTime = Field(description="device time of the fix")
    device: str
    seq: int
    acc: float | None = Field(description="accuracy radius, metres; null = unknown")
    src: str | None
    batt: int | None
    quality: list[str] = Field(description="geofence.model.Quality flags, e.g. ACC_POOR, LATE")
    zone_state: str | None = Field(description="in | out | uncertain against the allowed area")


class PointGeometry(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[lon, lat], WGS-84")


class TrackFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: PointGeometry
    properties: TrackProperties


class Track(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[TrackFeature]


class Position(BaseModel):
    supervisee: str
    device: str | None
    ts: UtcTime = Field(description="device time of the fix")
    lat: float
    lon: float
    acc: float | None
    batt: int | None = None
    state: str = Field(description="ok | uncertain | outside | breach | unknown, for the map")


class Positions(BaseModel):
    items: list[Position]


def track_features(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored fixes (storage.repo.tracks.track) as GeoJSON Point features (TrackFeature)."""
    return [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
            "properties": {
                "ts": iso_time(r["ts"]),
                "device": r["device"],
                "seq": r["seq"],
                "acc": r["acc"],
                "src": r["src"],
                "batt": r["batt"],
                "quality": Quality.names(r["quality"]),
                "zone_state": r["zone_state"],
            },
        }
        for r in rows
    ]


@router.get("/supervisees/{supervisee_id}/track", response_model=Track)
async def track(
    ctx: Ctx,
    user: User,
    supervisee_id: str,
    start: Since,
    end: Until,
) -> Response:
    """One Point per stored fix with a position in [from, to), oldest first."""
    if end <= start:
        raise ApiError(422, "'to' must be after 'from'")
    if end - start > MAX_RANGE:
        raise ApiError(422, f"the range may span at most {MAX_RANGE.days} days; ask in parts")
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        archive = Archive.of(ctx.settings)
        rows = await history.track(conn, archive, supervisee_id, start, end, MAX_FIXES + 1)
        if len(rows) > MAX_FIXES:
            raise ApiError(
                422, f"more than {MAX_FIXES} fixes in this range; ask for a shorter range"
            )
        await audit.record(
            conn,
            user,
            "location.track",
            f"supervisee:{supervisee_id}",
            {"from": start.isoformat(), "to": end.isoformat(), "fixes": len(rows)},
        )
    features = track_features(rows)
    # Encoded directly: a month of fixes is too many to push through model validation;
    # the response model above still documents the shape.
    body = msgspec.json.encode({"type": "FeatureCollection", "features": features})
    return Response(body, media_type="application/json")


@router.get("/positions", response_model=Positions)
async def positions(ctx: Ctx, user: User) -> Positions:
    """Latest position of each active supervisee in the caller's offices: from the live
    cache the ingest keeps in Redis, and from stored fixes for anyone not in it."""
    async with ctx.pool.acquire() as conn:
        ids = await people_repo.active_supervisee_ids(conn, user.offices)
        cached = await _cached(ctx, ids)
        found = {sid: _from_cache(raw) for sid, raw in zip(ids, cached, strict=True) if raw}
        missing = [sid for sid in ids if sid not in found]
        for row in await tracks_repo.latest_positions(conn, missing) if missing else []:
            found[row["supervisee"]] = Position.model_validate(dict(row))
        await audit.record(conn, user, "location.latest", "positions", {"count": len(found)})
    return Positions(items=[found[sid] for sid in ids if sid in found])


async def _cached(ctx: Ctx, ids: list[str]) -> list[bytes | str | None]:
    """The live cache's entries for `ids`; none while Redis is down, which only costs
    freshness: the stored fixes answer instead."""
    if not ids:
        return []
    try:
        return list(await ctx.redis.hmget(LATEST, ids))
    except (RedisError, OSError) as exc:
        log.warning("positions from the database only: Redis unavailable (%s)", exc)
        return [None] * len(ids)


def _from_cache(raw: bytes | str) -> Position:
    return Position.model_validate(msgspec.json.decode(raw))
