"""Zones from GeoJSON: DataV-style boundary files as they come, in WGS-84 or GCJ-02.

Each feature becomes a `ZoneDef` in WGS-84, converted once here. Ring orientation is
normalised (DataV rings run clockwise, RFC 7946 wants counter-clockwise), invalid rings
are repaired, and a Point with a `radius` (metres) is a circle, as a prohibition order
around a victim's home usually is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import shapely
from shapely.geometry import mapping, shape

from geofence.crs import gcj02_to_wgs84
from geofence.limits import MAX_SCHEDULE_WINDOWS, circle_radius, geometry_problem
from geofence.model import Window, ZoneDef

KINDS = ("jurisdiction", "exclusion", "home")
CRSES = ("wgs84", "gcj02")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$|^24:00$")


class ZoneError(ValueError):
    """A zone that cannot be used, with the reason in plain words."""


def parse_schedule(raw: Any) -> tuple[Window, ...]:
    """`[{"days":[1..7],"from":"HH:MM","to":"HH:MM"}]` → windows (spec 4.2)."""
    if raw in (None, []):
        return ()
    if not isinstance(raw, list):
        raise ZoneError("schedule must be a list of {days, from, to}")
    if len(raw) > MAX_SCHEDULE_WINDOWS:
        raise ZoneError(f"schedule has {len(raw)} windows, limit {MAX_SCHEDULE_WINDOWS}")
    windows = []
    for item in raw:
        if not isinstance(item, dict):
            raise ZoneError("each schedule entry must be an object with days, from, to")
        days = item.get("days", [1, 2, 3, 4, 5, 6, 7])
        if not (
            isinstance(days, list)
            and days
            and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in days)
        ):
            raise ZoneError(f"schedule days must be ISO weekdays 1..7, got {days!r}")
        windows.append(
            Window(tuple(sorted(set(days))), _minutes(item.get("from")), _minutes(item.get("to")))
        )
    return tuple(windows)


def _minutes(value: Any) -> int:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ZoneError(f"schedule times must be HH:MM, got {value!r}")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def schedule_to_json(windows: Iterable[Window]) -> list[dict[str, Any]]:
    return [
        {
            "days": list(w.days),
            "from": f"{w.start_min // 60:02d}:{w.start_min % 60:02d}",
            "to": f"{w.end_min // 60:02d}:{w.end_min % 60:02d}",
        }
        for w in windows
    ]


def to_wgs84(geom: shapely.Geometry, crs: str) -> shapely.Geometry:
    if crs == "wgs84":
        return geom

    def convert(coords: Any) -> Any:
        lat, lon = gcj02_to_wgs84(coords[:, 1], coords[:, 0])
        coords[:, 0], coords[:, 1] = lon, lat
        return coords

    return shapely.transform(geom, convert)


def clean_polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """Valid, counter-clockwise exterior rings, polygons only."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type == "GeometryCollection":
        geom = shapely.union_all([g for g in geom.geoms if g.geom_type.endswith("Polygon")])
    if geom.is_empty or not geom.geom_type.endswith("Polygon"):
        raise ZoneError("the geometry has no area")
    return shapely.orient_polygons(geom)


def parse_feature(
    feature: Any, *, default_kind: str | None = None, default_crs: str = "wgs84"
) -> ZoneDef:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ZoneError("not a GeoJSON Feature")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ZoneError("properties must be an object")
    zone_id = props.get("id", feature.get("id", props.get("adcode")))
    if zone_id is None or str(zone_id) == "":
        raise ZoneError("the feature has no id (properties.id, id or adcode)")
    zone_id = str(zone_id)
    kind = props.get("kind", default_kind)
    if kind not in KINDS:
        raise ZoneError(f"zone {zone_id}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    crs = str(props.get("crs", default_crs)).lower().replace("-", "")
    if crs not in CRSES:
        raise ZoneError(f"zone {zone_id}: crs must be wgs84 or gcj02, got {props.get('crs')!r}")
    raw_geometry = feature.get("geometry")
    try:
        geom = shape(raw_geometry)
    except Exception as exc:
        raise ZoneError(f"zone {zone_id}: unreadable geometry ({exc})") from None
    if not shapely.is_valid_input(geom) or geom.is_empty:
        raise ZoneError(f"zone {zone_id}: empty geometry")
    problem = geometry_problem(geom)
    if problem is not None:
        raise ZoneError(f"zone {zone_id}: {problem}")
    geom = to_wgs84(geom, crs)
    radius: float | None = None
    if geom.geom_type == "Point":
        try:
            radius = circle_radius(props.get("radius", props.get("radius_m")))
        except ValueError as exc:
            raise ZoneError(f"zone {zone_id}: {exc}") from None
    else:
        try:
            geom = clean_polygonal(geom)
        except ZoneError as exc:
            raise ZoneError(f"zone {zone_id}: {exc}") from None
    return ZoneDef(
        id=zone_id,
        kind=kind,
        geometry=mapping(geom),
        name=str(props.get("name", "")),
        source_crs=crs,
        schedule=parse_schedule(props.get("schedule")),
        radius_m=radius,
    )


def parse_feature_collection(
    doc: Any, *, default_kind: str | None = None, default_crs: str = "wgs84"
) -> list[ZoneDef]:
    """All features of a FeatureCollection, or a ZoneError naming the first bad one."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ZoneError("expected a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise ZoneError("the FeatureCollection has no features list")
    zones = []
    for index, feature in enumerate(features):
        try:
            zones.append(parse_feature(feature, default_kind=default_kind, default_crs=default_crs))
        except ZoneError as exc:
            raise ZoneError(f"feature {index}: {exc}") from None
    return zones
