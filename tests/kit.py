"""Building blocks for tests: the real 丽水 boundaries and simple tracks across them."""

from __future__ import annotations

import json
import math
import struct
from functools import cache
from pathlib import Path
from typing import Any, cast

import shapely
from redis.asyncio import Redis
from shapely.geometry import LineString, shape

from geofence.model import Fix, Roster
from geofence.zones import parse_feature_collection

DATA = Path(__file__).resolve().parent.parent / "data"
LIANDU, QINGTIAN, JINYUN = "331102", "331121", "331122"
# 莲都区 city seat, WGS-84 (data/README.md)
LIANDU_SEAT = (28.4710386, 119.9183933)
T0 = 1_764_240_000_000  # 2025-11-27 10:40 UTC, 18:40 in Shanghai
_M_PER_DEG = 111_195.0


@cache
def lishui_collection() -> dict[str, Any]:
    """The DataV file as spec 4.2 zones: id = adcode, kind jurisdiction, crs gcj02."""
    doc = json.loads((DATA / "lishui-331100-districts.geojson").read_text())
    for f in doc["features"]:
        f["properties"].update(id=str(f["properties"]["adcode"]), kind="jurisdiction", crs="gcj02")
    return doc


@cache
def county(adcode: str) -> shapely.Geometry:
    """A county in WGS-84."""
    zones = {z.id: z for z in parse_feature_collection(lishui_collection())}
    return shape(zones[adcode].geometry)


def offset(point: tuple[float, float], east_m: float, north_m: float) -> tuple[float, float]:
    lat, lon = point
    return (
        lat + north_m / _M_PER_DEG,
        lon + east_m / (_M_PER_DEG * math.cos(math.radians(lat))),
    )


def border_crossing(
    inside: tuple[float, float], outside: tuple[float, float], adcode: str
) -> tuple[float, float]:
    """Where the straight line from `inside` to `outside` leaves the county (lat, lon)."""
    line = LineString([(inside[1], inside[0]), (outside[1], outside[0])])
    hit = line.intersection(county(adcode).boundary)
    first = min(
        shapely.get_parts(hit), key=lambda p: p.distance(shapely.Point(inside[1], inside[0]))
    )
    return (first.y, first.x)


def qingtian_point() -> tuple[float, float]:
    c = county(QINGTIAN).representative_point()
    return (c.y, c.x)


def line(
    start: tuple[float, float],
    end: tuple[float, float],
    n: int,
    *,
    t0: int = T0,
    interval_s: float = 30.0,
    acc: float = 8.0,
    seq0: int = 1,
) -> list[dict[str, Any]]:
    """n fixes (spec 4.1 entries) evenly along start → end."""
    out = []
    for i in range(n):
        f = i / max(n - 1, 1)
        out.append(
            {
                "seq": seq0 + i,
                "ts": int(t0 + i * interval_s * 1000),
                "lat": start[0] + (end[0] - start[0]) * f,
                "lon": start[1] + (end[1] - start[1]) * f,
                "acc": acc,
            }
        )
    return out


def fix(entry: dict[str, Any], device: str = "T1", at: int | None = None) -> Fix:
    return Fix(
        device=device,
        seq=entry["seq"],
        ts=entry["ts"],
        at=entry["ts"] + 1000 if at is None else at,
        lat=entry.get("lat"),
        lon=entry.get("lon"),
        acc=entry.get("acc"),
        src=entry.get("src"),
        batt=entry.get("batt"),
        chg=entry.get("chg"),
        strap=entry.get("strap"),
    )


def roster(**person: Any) -> Roster:
    """A one-person roster (spec 4.2 fields), living in 莲都区 with tag T1 by default."""
    from fencewatch.scenario import parse_supervisee

    raw = {"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"], **person}
    return Roster(timezone="Asia/Shanghai", supervisees=[parse_supervisee(raw)])


def square(zone_id: str, kind: str, lon: float, lat: float, half: float) -> dict[str, Any]:
    """A square zone feature (WGS-84), `half` degrees either side of its centre."""
    return box(zone_id, kind, lon - half, lat - half, lon + half, lat + half)


def square_m(zone_id: str, kind: str, centre: tuple[float, float], half_m: float) -> dict[str, Any]:
    """A square zone feature `half_m` metres either side of `centre` (lat, lon): distances
    to its border are known in metres, as the engine measures them."""
    south, west = offset(centre, -half_m, -half_m)
    north, east = offset(centre, half_m, half_m)
    return box(zone_id, kind, west, south, east, north)


def box(
    zone_id: str, kind: str, west: float, south: float, east: float, north: float
) -> dict[str, Any]:
    """A rectangular zone feature (WGS-84) between these longitudes and latitudes."""
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "properties": {"id": zone_id, "kind": kind, "name": zone_id},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


# The office tree the API tests share, and who is supervised where:
# centre C ─┬─ county K1 ─┬─ station S1 (P1)
#           │             └─ station S2 (P2)
#           └─ county K2 ─── station S3 (P3)
OFFICES = [
    ("C", "监控中心", "center", None),
    ("K1", "莲都区司法局", "county", "C"),
    ("S1", "紫金司法所", "station", "K1"),
    ("S2", "岩泉司法所", "station", "K1"),
    ("K2", "青田县司法局", "county", "C"),
    ("S3", "鹤城司法所", "station", "K2"),
]
PEOPLE = {"P1": "S1", "P2": "S2", "P3": "S3"}


async def in_redis(redis: Redis, *where: float) -> set[str]:
    """The Redis keys with a value that, read whole whatever its type, holds any of `where`:
    as text (to 5 decimals: JSON) or as a binary double (msgpack, as sightings are kept)."""
    needles = [f"{w:.5f}".encode() for w in where] + [struct.pack(">d", w) for w in where]
    found = set()
    async for key in redis.scan_iter():
        kind = cast("bytes", await redis.type(key)).decode()
        values: list[Any]
        if kind == "string":
            values = [await redis.get(key)]
        elif kind == "hash":
            values = [x for kv in (await redis.hgetall(key)).items() for x in kv]
        elif kind == "stream":
            entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(key))
            values = [x for _, fields in entries for kv in fields.items() for x in kv]
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "zset":
            values = await redis.zrange(key, 0, -1)
        else:
            raise AssertionError(f"{key!r} is a {kind}: read it too")
        if any(n in v for v in values for n in needles):
            found.add(key.decode())
    return found
