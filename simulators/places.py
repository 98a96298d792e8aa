"""Zones for places, as an operator draws them: a circle round a victim's home, a school's
grounds, a home compound; in WGS-84 or, drawn on an Amap/Tencent map, in GCJ-02.

Places are chosen in WGS-84 (where people really are); a GCJ-02 zone is written with the
coordinates a Chinese web map shows for that same place, ~570 m off near 丽水 if misread.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from geofence.crs import wgs84_to_gcj02
from simulators.geo import offset


def _coords(lat: Any, lon: Any, crs: str) -> tuple[Any, Any]:
    if crs == "gcj02":
        return wgs84_to_gcj02(lat, lon)
    return np.asarray(lat), np.asarray(lon)


def _feature(
    zone_id: str,
    kind: str,
    geometry: dict[str, Any],
    crs: str,
    name: str,
    schedule: list[dict[str, Any]] | None,
    **extra: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {"id": zone_id, "kind": kind, "crs": crs, "name": name, **extra}
    if schedule:
        props["schedule"] = schedule
    return {"type": "Feature", "properties": props, "geometry": geometry}


def circle(
    zone_id: str,
    kind: str,
    lat: float,
    lon: float,
    radius_m: float,
    *,
    crs: str = "wgs84",
    name: str = "",
    schedule: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Point with a radius (metres): how a prohibition order's 'within N m of' is drawn."""
    clat, clon = _coords(lat, lon, crs)
    geometry = {"type": "Point", "coordinates": [round(float(clon), 7), round(float(clat), 7)]}
    return _feature(zone_id, kind, geometry, crs, name, schedule, radius=round(radius_m, 1))


def block(
    zone_id: str,
    kind: str,
    lat: float,
    lon: float,
    width_m: float,
    depth_m: float,
    bearing: float,
    *,
    crs: str = "wgs84",
    name: str = "",
    schedule: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A rectangle centred on (`lat`, `lon`), turned `bearing` degrees: a school's grounds,
    a residential compound (小区)."""
    a = math.radians(bearing)
    ux, uy = math.sin(a), math.cos(a)  # along the width
    vx, vy = -uy, ux
    corners = [(sw, sd) for sw, sd in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))]
    east = [sw * width_m / 2 * ux + sd * depth_m / 2 * vx for sw, sd in corners]
    north = [sw * width_m / 2 * uy + sd * depth_m / 2 * vy for sw, sd in corners]
    plat, plon = offset(np.full(5, lat), np.full(5, lon), east, north)
    clat, clon = _coords(plat, plon, crs)
    ring = [[round(float(x), 7), round(float(y), 7)] for x, y in zip(clon, clat, strict=True)]
    return _feature(zone_id, kind, {"type": "Polygon", "coordinates": [ring]}, crs, name, schedule)


def window(days: list[int], start: str, end: str) -> dict[str, Any]:
    return {"days": days, "from": start, "to": end}


WEEKDAYS = [1, 2, 3, 4, 5]
EVERY_DAY = [1, 2, 3, 4, 5, 6, 7]
