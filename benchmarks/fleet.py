"""The simulated fleet: N people living in 莲都区, one tag each, and where each tag is at
any device time.

Most tags sit still, circling 20 m around a home point well inside the district, slowly
enough (0.2 m/s) that no report rate makes them look like a jump. A small share are
*crossers*: they drive back and forth (10 m/s) across the district border on a fixed
four-minute cycle, so each confirms one `jurisdiction_exit` per cycle; those are the
alerts whose latency is measured. Positions are a function of device time only, so the
generator can compute them for any batch, at any rate, vectorised.

The fleet is built once by the orchestrator (`build`), saved as arrays (`save`) that the
generator processes `load`, and written as a spec 4.2 scenario (`write_scenario`) for
`fencewatch.loader.load_scenario`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import shapely

from tests.kit import LIANDU, LIANDU_SEAT, border_crossing, county, lishui_collection, offset

M_PER_DEG = 111_195.0
WOBBLE_M = 20.0
WOBBLE_PERIOD_MS = 600_000
# Crosser cycle (ms into it → 0 at the inside point A, 1 at the outside point B): wait
# inside, drive out, stay out long enough to confirm a breach (3 fixes over 60 s by
# default policy) even at one fix per 30 s, drive back.
CYCLE_MS = np.array([0, 30_000, 90_000, 180_000, 240_000], dtype=np.float64)
CYCLE_F = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
CROSS_M = 300.0  # A and B are this far from the border, on either side
CROSSING_SITES = 64
EXCLUSIONS = 5
EXCLUSION_RADIUS_M = 300.0
HOME_CLEARANCE_DEG = 0.01  # ~1 km from the district border and from exclusion zones
TIMEZONE = "Asia/Shanghai"


def device_id(index: int) -> str:
    return f"BT{index:06d}"


def device_index(device: str) -> int | None:
    """The inverse of `device_id`; None for a device that is not the benchmark's."""
    digits = device.removeprefix("BT")
    return int(digits) if digits != device and digits.isdigit() else None


def supervisee_id(index: int) -> str:
    return f"BS{index:06d}"


class Fleet(msgspec.Struct):
    """Per device (index = global device number): the base point (home, or the crosser's
    inside point A), the crosser's displacement A→B (0 for the others), and a phase."""

    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    dlat: npt.NDArray[np.float64]
    dlon: npt.NDArray[np.float64]
    crosser: npt.NDArray[np.bool_]
    phase: npt.NDArray[np.float64]  # 0..1 of the device's cycle
    exclusions: list[tuple[float, float]]  # circle centres (lat, lon), WGS-84

    def __len__(self) -> int:
        return len(self.lat)

    def part(self, index: int, parts: int) -> Fleet:
        """Every `parts`-th device from `index`: one generator process's share."""
        s = slice(index, None, parts)
        return Fleet(
            self.lat[s],
            self.lon[s],
            self.dlat[s],
            self.dlon[s],
            self.crosser[s],
            self.phase[s],
            self.exclusions,
        )

    def positions(
        self, devices: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(lat, lon) of `devices` (indices into this fleet) at device times `ts`
        (broadcast against `devices[:, None]` for batches)."""
        d = devices[:, None] if ts.ndim == 2 else devices
        phase = self.phase[d]
        cycle = np.mod(ts + phase * CYCLE_MS[-1], CYCLE_MS[-1])
        f = np.interp(cycle, CYCLE_MS, CYCLE_F)
        angle = 2 * math.pi * (ts / WOBBLE_PERIOD_MS + phase)
        still = ~self.crosser[d]
        wobble_lat = WOBBLE_M / M_PER_DEG * still
        wobble_lon = wobble_lat / np.cos(np.radians(self.lat[d]))
        lat = self.lat[d] + f * self.dlat[d] + wobble_lat * np.sin(angle)
        lon = self.lon[d] + f * self.dlon[d] + wobble_lon * np.cos(angle)
        return lat, lon


def build(tags: int, crosser_share: float, seed: int = 4) -> Fleet:
    rng = np.random.default_rng(seed)
    district = county(LIANDU)
    exclusions = _exclusion_centres(district, rng)
    crossers = min(tags, max(1, round(tags * crosser_share))) if crosser_share > 0 else 0
    lat = np.empty(tags)
    lon = np.empty(tags)
    dlat = np.zeros(tags)
    dlon = np.zeros(tags)
    # Crossers are spread through the index range, so each generator process has some.
    is_crosser = np.zeros(tags, dtype=bool)
    if crossers:
        is_crosser[np.linspace(0, tags - 1, crossers).round().astype(int)] = True
    sites = _crossing_sites(district, rng) if crossers else []
    for n, i in enumerate(np.flatnonzero(is_crosser)):
        (alat, alon), (blat, blon) = sites[n % len(sites)]
        lat[i], lon[i], dlat[i], dlon[i] = alat, alon, blat - alat, blon - alon
    homes = _homes(district, exclusions, int(tags - crossers), rng)
    lat[~is_crosser], lon[~is_crosser] = homes[:, 0], homes[:, 1]
    return Fleet(lat, lon, dlat, dlon, is_crosser, rng.random(tags), exclusions)


def _exclusion_centres(
    district: shapely.Geometry, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Prohibition-order circles a few km from the city seat, well inside the district."""
    inner = district.buffer(-0.03)
    centres: list[tuple[float, float]] = []
    for _ in range(1000):
        if len(centres) == EXCLUSIONS:
            break
        east, north = rng.uniform(-8000, 8000, 2)
        lat, lon = offset(LIANDU_SEAT, east, north)
        if inner.contains(shapely.Point(lon, lat)):
            centres.append((float(lat), float(lon)))
    return centres


def _homes(
    district: shapely.Geometry,
    exclusions: list[tuple[float, float]],
    count: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """`count` points (lat, lon) inside the district, clear of its border and the zones."""
    clear = district.buffer(-HOME_CLEARANCE_DEG).difference(
        shapely.union_all([shapely.Point(lon, lat).buffer(0.01) for lat, lon in exclusions])
    )
    shapely.prepare(clear)
    west, south, east, north = clear.bounds
    found: list[npt.NDArray[np.float64]] = []
    have = 0
    for _ in range(100):
        if have >= count:
            break
        lon = rng.uniform(west, east, 2 * count + 100)
        lat = rng.uniform(south, north, 2 * count + 100)
        inside = shapely.contains_xy(clear, lon, lat)
        found.append(np.column_stack([lat[inside], lon[inside]]))
        have += int(inside.sum())
    return np.concatenate(found)[:count] if found else np.empty((0, 2))


def _crossing_sites(
    district: shapely.Geometry, rng: np.random.Generator
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Pairs (A inside, B outside), each CROSS_M from where a ray from the city seat first
    leaves the district, kept only where both are clearly on their side (the border
    wiggles)."""
    boundary = district.boundary
    sites: list[tuple[tuple[float, float], tuple[float, float]]] = []
    for bearing in rng.permutation(np.linspace(0, 2 * math.pi, 4 * CROSSING_SITES, False)):
        if len(sites) == CROSSING_SITES:
            break
        east, north = math.sin(bearing), math.cos(bearing)
        far = offset(LIANDU_SEAT, 80_000 * east, 80_000 * north)
        x = border_crossing(LIANDU_SEAT, far, LIANDU)
        a = offset(x, -CROSS_M * east, -CROSS_M * north)
        b = offset(x, CROSS_M * east, CROSS_M * north)
        pa, pb = shapely.Point(a[1], a[0]), shapely.Point(b[1], b[0])
        if (
            district.contains(pa)
            and not district.contains(pb)
            and min(boundary.distance(pa), boundary.distance(pb)) > 0.001  # ~100 m
        ):
            sites.append((a, b))
    if not sites:
        raise RuntimeError("no usable border crossing found for the crossers")
    return sites


def save(fleet: Fleet, path: Path) -> None:
    np.savez(
        path,
        lat=fleet.lat,
        lon=fleet.lon,
        dlat=fleet.dlat,
        dlon=fleet.dlon,
        crosser=fleet.crosser,
        phase=fleet.phase,
        exclusions=np.array(fleet.exclusions, dtype=np.float64).reshape(-1, 2),
    )


def load(path: Path) -> Fleet:
    with np.load(path) as z:
        return Fleet(
            z["lat"],
            z["lon"],
            z["dlat"],
            z["dlon"],
            z["crosser"],
            z["phase"],
            [(float(a), float(b)) for a, b in z["exclusions"]],
        )


def write_scenario(fleet: Fleet, directory: Path) -> Path:
    """zones.geojson (丽水's nine districts as shipped, GCJ-02, plus the exclusion circles)
    and roster.json (everyone in 莲都区, two exclusion zones each) — spec 4.2."""
    zones = lishui_collection()
    exclusion_ids = [f"bench-exclusion-{n + 1}" for n in range(len(fleet.exclusions))]
    circles: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"id": zid, "kind": "exclusion", "radius": EXCLUSION_RADIUS_M},
        }
        for zid, (lat, lon) in zip(exclusion_ids, fleet.exclusions, strict=True)
    ]
    people = [
        {
            "id": supervisee_id(i),
            "jurisdiction": [LIANDU],
            "exclusion": [exclusion_ids[(i + k) % len(exclusion_ids)] for k in range(2)]
            if exclusion_ids
            else [],
            "home": None,
            "devices": [device_id(i)],
            "leaves": [],
        }
        for i in range(len(fleet))
    ]
    directory.mkdir(parents=True, exist_ok=True)
    collection = {**zones, "features": [*zones["features"], *circles]}
    (directory / "zones.geojson").write_text(json.dumps(collection))
    (directory / "roster.json").write_text(
        json.dumps({"timezone": TIMEZONE, "supervisees": people})
    )
    return directory
