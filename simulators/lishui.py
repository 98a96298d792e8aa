"""丽水市's nine counties from the shipped DataV file, and places near their borders.

The file is GCJ-02 (data/README.md). Zone features are written out exactly as the file has
them (`crs: gcj02`), because that is what a user imports; the simulated people live in
WGS-84, the frame devices report in, so their places come from the converted polygons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import shapely
from shapely.geometry import shape

from geofence.crs import gcj02_to_wgs84
from geofence.model import ZoneDef
from geofence.zones import parse_feature
from simulators.geo import Frame

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "lishui-331100-districts.geojson"

LIANDU = "331102"  # 莲都区, the city seat: where the simulated people live
QINGTIAN = "331121"
JINYUN = "331122"
SUICHANG = "331123"
SONGYANG = "331124"
YUNHE = "331125"
QINGYUAN = "331126"
JINGNING = "331127"
LONGQUAN = "331181"
LIANDU_NEIGHBOURS = (QINGTIAN, JINYUN, SONGYANG, YUNHE, JINGNING)

FRAME = Frame(28.45, 119.92)


@dataclass(frozen=True)
class County:
    id: str
    name: str
    wgs84: shapely.Geometry
    metric: shapely.Geometry  # in FRAME metres, prepared
    seat: tuple[float, float]  # (lat, lon) WGS-84 of the county seat (DataV `center`)


@dataclass(frozen=True)
class Crossing:
    """A straight line across a county border: `inside` is `inside_m` within the county,
    `outside` is `outside_m` beyond it, and `outward` the bearing (degrees) from one to the
    other, perpendicular to the border where they cross it."""

    inside: tuple[float, float]
    border: tuple[float, float]
    outside: tuple[float, float]
    outward: float
    neighbour: str


@cache
def _raw() -> list[dict[str, Any]]:
    doc = msgspec.json.decode(DATA_FILE.read_bytes())
    return list(doc["features"])


def zone_features() -> list[dict[str, Any]]:
    """The nine counties as spec 4.2 jurisdiction zones, GCJ-02 geometry as in the file."""
    return [
        {
            "type": "Feature",
            "properties": {
                "id": str(f["properties"]["adcode"]),
                "kind": "jurisdiction",
                "crs": "gcj02",
                "name": f["properties"]["name"],
            },
            "geometry": f["geometry"],
        }
        for f in _raw()
    ]


@cache
def county_zones() -> tuple[ZoneDef, ...]:
    """The counties as the engine reads them (converted to WGS-84 once per process)."""
    return tuple(parse_feature(f) for f in zone_features())


@cache
def counties() -> dict[str, County]:
    out = {}
    for zone in county_zones():
        wgs84 = shape(zone.geometry)
        metric = FRAME.to_metric(wgs84)
        shapely.prepare(metric)
        raw = next(f for f in _raw() if str(f["properties"]["adcode"]) == zone.id)
        glon, glat = raw["properties"]["center"]
        lat, lon = gcj02_to_wgs84(glat, glon)
        out[zone.id] = County(zone.id, zone.name, wgs84, metric, (float(lat), float(lon)))
    return out


def county_at(lat: float, lon: float) -> str | None:
    x, y = FRAME.xy(lat, lon)
    for c in counties().values():
        if shapely.contains_xy(c.metric, float(x), float(y)):
            return c.id
    return None


@cache
def _shared_border(a: str, b: str) -> tuple[shapely.Geometry, ...]:
    both = counties()[a].metric.boundary.intersection(counties()[b].metric.boundary)
    parts = shapely.get_parts(shapely.line_merge(both) if both.geom_type != "Point" else both)
    return tuple(p for p in parts if p.geom_type == "LineString" and p.length > 500)


@cache
def _inner(county: str, depth_m: float) -> shapely.Geometry:
    geom = counties()[county].metric.buffer(-depth_m, quad_segs=2)
    shapely.prepare(geom)
    return geom


def _point(x: float, y: float) -> tuple[float, float]:
    lat, lon = FRAME.latlon(x, y)
    return float(lat), float(lon)


def crossing(
    rng: np.random.Generator,
    inside_m: float,
    outside_m: float,
    neighbour: str | None = None,
    county: str = LIANDU,
) -> Crossing:
    """A random crossing of `county`'s border with `neighbour` (any neighbour, weighted by
    the border's length, when None). Both ends are checked to be at roughly their stated
    distance from the border and the line between them to cross it exactly once."""
    home = counties()[county]
    choices = [neighbour] if neighbour else [n for n in LIANDU_NEIGHBOURS if n != county]
    lines = [(n, part) for n in choices for part in _shared_border(county, n)]
    weights = np.array([part.length for _, part in lines])
    for _ in range(500):
        n, line = lines[rng.choice(len(lines), p=weights / weights.sum())]
        s = rng.uniform(0.05, 0.95) * line.length
        p = line.interpolate(s)
        a, b = line.interpolate(max(s - 20, 0)), line.interpolate(min(s + 20, line.length))
        tx, ty = b.x - a.x, b.y - a.y
        norm = math.hypot(tx, ty)
        if norm == 0:
            continue
        nx, ny = -ty / norm, tx / norm
        if shapely.contains_xy(home.metric, p.x + 5 * nx, p.y + 5 * ny):
            nx, ny = -nx, -ny
        ix, iy = p.x - inside_m * nx, p.y - inside_m * ny
        ox, oy = p.x + outside_m * nx, p.y + outside_m * ny
        if not shapely.contains_xy(_inner(county, 0.8 * inside_m), ix, iy):
            continue
        if outside_m > 0 and not shapely.contains_xy(_inner(n, 0.8 * outside_m), ox, oy):
            continue
        segment = shapely.LineString([(ix, iy), (ox, oy)])
        if shapely.get_num_geometries(segment.intersection(home.metric.boundary)) != 1:
            continue
        return Crossing(
            inside=_point(ix, iy),
            border=_point(p.x, p.y),
            outside=_point(ox, oy),
            outward=math.degrees(math.atan2(nx, ny)) % 360,
            neighbour=n,
        )
    raise RuntimeError(f"no clean crossing {county}→{neighbour} at {inside_m}/{outside_m} m")


def interior_point(
    rng: np.random.Generator,
    county: str = LIANDU,
    min_depth_m: float = 1000.0,
    near: tuple[float, float] | None = None,
    within_m: float = 3000.0,
) -> tuple[float, float]:
    """A random point at least `min_depth_m` inside `county`, within `within_m` of `near`
    (default: the county seat) when such a point exists."""
    inner = _inner(county, min_depth_m)
    cx, cy = FRAME.xy(*(near or counties()[county].seat))
    for _ in range(2000):
        r = within_m * math.sqrt(rng.uniform())
        a = rng.uniform(0, 2 * math.pi)
        x, y = float(cx) + r * math.cos(a), float(cy) + r * math.sin(a)
        if shapely.contains_xy(inner, x, y):
            return _point(x, y)
    raise RuntimeError(f"no point {min_depth_m} m inside {county} within {within_m} m")
