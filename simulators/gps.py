"""What a device reports, given where its wearer really is: the GPS error model.

Each source errs in its own way, and the ways that make naive geofences cry wolf are the
ones modelled with care:
- GNSS outdoors (gps/bds): a few metres, correlated over a minute; the reported `acc` is a
  ~80% radius, as receivers' HDOP-based estimates are.
- GNSS indoors: an Ornstein–Uhlenbeck offset that wanders tens of metres over minutes,
  and now and then an *excursion*: the offset swells to 100–250 m for a few minutes
  (reflections off a facade) while `acc` grows far less than the error. A person asleep
  150 m inside a border produces a run of confident-looking fixes 100 m outside it.
- Multipath outdoors: one or two fixes hundreds of metres off, usually with a small,
  lying `acc`.
- Wifi: 20–80 m, an AP-database position that drifts slowly; rarely an AP in the wrong
  place throws a fix or two far off.
- Cell (LBS): the serving tower's position, sticky for minutes and ping-ponging between
  neighbours, 1–2 km from the truth with `acc` of the tower's coverage (500–2000 m).
- No fix: under cover there is usually nothing (`fix: false`), sometimes a cell fix.

Every random draw comes from one seeded generator, so a model replays exactly; the model
keeps its state between calls, so a live tag can ask for fixes a chunk at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from simulators.geo import FloatArray, metres_per_degree, offset
from simulators.route import Env, Sample

SOURCES = ("gps", "bds", "wifi", "cell", "mixed")
NO_FIX = -1
WIFI, CELL = SOURCES.index("wifi"), SOURCES.index("cell")

# Correlation times (s) of the slowly varying errors.
_TAU_GNSS = 60.0
_TAU_INDOOR = 600.0
_TAU_WIFI = 900.0
_TOWER_RADIUS_M = (500.0, 2000.0)


@dataclass(frozen=True)
class GpsProfile:
    gnss: str = "bds"  # how satellite fixes are labelled (Chinese tags: bds or mixed)
    gnss_sigma_m: float = 3.0  # per axis outdoors: open sky ~2, urban canyon ~5
    indoor_sigma_m: float = 22.0
    indoor_mix: tuple[float, float, float] = (0.55, 0.30, 0.15)  # weak GNSS, wifi, cell
    cover_cell: float = 0.1  # chance of a cell fix rather than none under cover
    multipath_per_fix: float = 0.003
    wifi_outlier_per_fix: float = 0.004
    excursions_per_h: float = 0.3  # indoor GNSS drift excursions
    excursion_m: tuple[float, float] = (100.0, 250.0)
    excursion_s: tuple[float, float] = (180.0, 600.0)
    excursion_bearing: float | None = None  # a facade that always reflects one way
    cell_spacing_m: float = 2500.0
    source_hold_s: float = 1800.0  # mean time an indoor/cover source choice lasts
    gnss_off: bool = False  # power-saving firmware: LBS (cell) and wifi only


@dataclass(frozen=True)
class Readings:
    """One row per report: what the device says (and `err`, what it got wrong)."""

    ts: npt.NDArray[np.int64]
    fix: npt.NDArray[np.bool_]
    lat: FloatArray
    lon: FloatArray
    acc: FloatArray
    src: npt.NDArray[np.int8]  # index into SOURCES, NO_FIX when there is no position
    spd: FloatArray  # NaN when the source gives none
    hdg: FloatArray
    err: FloatArray  # metres from the truth (NaN without a fix): for tests and tuning

    def __len__(self) -> int:
        return len(self.ts)


@cache
def _tower(seed: int, spacing: float, row: int, col: int) -> tuple[float, float, float]:
    """(north, east) offset of a grid cell's tower from the cell's centre, and its radius."""
    g = np.random.default_rng((seed, row + 2**20, col + 2**20))
    north, east = g.uniform(-0.35, 0.35, 2) * spacing
    return float(north), float(east), float(g.uniform(*_TOWER_RADIUS_M))


class GpsModel:
    def __init__(self, profile: GpsProfile, seed: int) -> None:
        self.p = profile
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.gnss = SOURCES.index(profile.gnss)
        self.last_t: int | None = None
        self.last_env = -1
        self.ou = [0.0] * 6  # (east, north) for gnss, indoor, wifi
        self.drift = self.ou  # the offsets at the report being made
        self.src = self.gnss
        self.excursion: tuple[int, float, float, float] | None = None  # start, s, m, bearing
        self.spike = (0, 0.0, 0.0, 0.0)  # fixes left, east, north, acc
        self.tower: tuple[float, float, float] | None = None  # lat, lon, radius
        self.tower_until = 0

    def observe(self, times: npt.ArrayLike, truth: Sample) -> Readings:
        t = np.asarray(times, dtype=np.int64)
        n = len(t)
        zs = self.rng.standard_normal((n, 10))
        u = self.rng.random((n, 10)).tolist()
        previous = np.concatenate(([self.last_t if self.last_t is not None else -(2**62)], t[:-1]))
        dts = np.maximum(t - previous, 0) / 1000.0
        drift = self._drift(dts, zs)
        z = zs.tolist()
        east = np.full(n, np.nan)
        north = np.full(n, np.nan)
        acc = np.full(n, np.nan)
        src = np.full(n, NO_FIX, dtype=np.int8)
        envs = truth.env.tolist()
        lats, lons = truth.lat.tolist(), truth.lon.tolist()
        for i, (ti, dt) in enumerate(zip(t.tolist(), dts.tolist(), strict=True)):
            self.last_t = ti
            self.drift = drift[i]
            env = envs[i]
            self._choose_source(env, dt, u[i][0], u[i][1])
            self.last_env = env
            if self.src == NO_FIX:
                continue
            src[i] = self.src
            if self.src == CELL:
                e, n_, a = self._cell(ti, lats[i], lons[i], u[i][2], z[i][6], z[i][7])
            elif self.src == WIFI:
                e, n_, a = self._wifi(z[i], u[i])
            elif env == Env.INDOOR:
                e, n_, a = self._indoor_gnss(ti, dt, z[i], u[i])
            else:
                e, n_, a = self._gnss(env, z[i], u[i])
            east[i], north[i], acc[i] = e, n_, a
        fix = src != NO_FIX
        lat, lon = offset(truth.lat, truth.lon, np.nan_to_num(east), np.nan_to_num(north))
        satellite = fix & (src != WIFI) & (src != CELL)
        spd = np.where(satellite, np.maximum(truth.spd + self.rng.normal(0, 0.3, n), 0.0), np.nan)
        hdg = np.where(
            satellite & (truth.spd > 0.5), (truth.hdg + self.rng.normal(0, 8, n)) % 360, np.nan
        )
        return Readings(
            ts=t,
            fix=fix,
            lat=np.where(fix, lat, np.nan),
            lon=np.where(fix, lon, np.nan),
            acc=acc,
            src=src,
            spd=spd,
            hdg=hdg,
            err=np.hypot(east, north),
        )

    def _drift(self, dts: FloatArray, z: FloatArray) -> list[list[float]]:
        """The three slow error offsets (gnss, indoor, wifi; east and north) at each
        report: exact Ornstein–Uhlenbeck steps over uneven intervals."""
        p = self.p
        sigma = np.repeat([p.gnss_sigma_m, p.indoor_sigma_m, 15.0], 2)
        tau = np.repeat([_TAU_GNSS, _TAU_INDOOR, _TAU_WIFI], 2)
        a = np.exp(-dts[:, None] / tau)
        kick = (sigma * np.sqrt(1 - a * a) * z[:, :6]).tolist()
        out = []
        ou = self.ou
        for ai, ki in zip(a.tolist(), kick, strict=True):
            ou = [x * f + k for x, f, k in zip(ou, ai, ki, strict=True)]
            out.append(ou)
        self.ou = ou
        return out

    def _choose_source(self, env: int, dt: float, u0: float, u1: float) -> None:
        if env in (Env.OUTDOOR, Env.VEHICLE):
            self.src = CELL if self.p.gnss_off else self.gnss
            return
        switch = env != self.last_env or u0 < 1 - math.exp(-dt / self.p.source_hold_s)
        if not switch:
            return
        if env == Env.COVER:
            self.src = CELL if u1 < self.p.cover_cell else NO_FIX
            return
        gnss, wifi, cell = self.p.indoor_mix
        if self.p.gnss_off:
            gnss, wifi = 0.0, wifi / (wifi + cell)
        self.src = self.gnss if u1 < gnss else WIFI if u1 < gnss + wifi else CELL

    def _gnss(self, env: int, z: list[float], u: list[float]) -> tuple[float, float, float]:
        sigma = self.p.gnss_sigma_m * (1.3 if env == Env.VEHICLE else 1.0)
        scale = 1.3 if env == Env.VEHICLE else 1.0
        e, n = self.drift[0] * scale, self.drift[1] * scale
        acc = min(max(1.8 * sigma * math.exp(0.25 * z[8]), 3.0), 15.0)
        left, se, sn, sacc = self.spike
        if left == 0 and u[3] < self.p.multipath_per_fix:
            bearing = 2 * math.pi * u[4]
            dist = 150.0 + 750.0 * u[5]
            lying = u[6] < 0.7
            sacc = 4.0 + 11.0 * u[7] if lying else 30.0 + 90.0 * u[7]
            left = 1 if u[8] < 0.7 else 2 if u[8] < 0.95 else 3
            se, sn = dist * math.sin(bearing), dist * math.cos(bearing)
        if left > 0:
            self.spike = (left - 1, se, sn, sacc)
            return e + se, n + sn, sacc
        return e, n, acc

    def _indoor_gnss(
        self, t: int, dt: float, z: list[float], u: list[float]
    ) -> tuple[float, float, float]:
        p = self.p
        if self.excursion is None and u[3] < 1 - math.exp(
            -p.excursions_per_h * min(dt, 3600) / 3600
        ):
            bearing = p.excursion_bearing if p.excursion_bearing is not None else 360 * u[4]
            self.excursion = (
                t,
                p.excursion_s[0] + (p.excursion_s[1] - p.excursion_s[0]) * u[5],
                p.excursion_m[0] + (p.excursion_m[1] - p.excursion_m[0]) * u[6],
                math.radians(bearing + 25 * z[9]),
            )
        swell = 0.0
        e, n = self.drift[2] + 3.0 * z[6], self.drift[3] + 3.0 * z[7]
        if self.excursion is not None:
            start, length, size, bearing = self.excursion
            phase = (t - start) / 1000.0 / length
            if phase >= 1:
                self.excursion = None
            else:
                swell = size * math.sin(math.pi * phase) ** 2
                e, n = e + swell * math.sin(bearing), n + swell * math.cos(bearing)
        acc = 1.6 * p.indoor_sigma_m * math.exp(0.2 * z[8]) + 0.2 * swell
        return e, n, min(max(acc, 18.0), 70.0)

    def _wifi(self, z: list[float], u: list[float]) -> tuple[float, float, float]:
        acc = min(max(1.8 * 15.0 * math.exp(0.25 * z[8]), 20.0), 80.0)
        e, n = self.drift[4] + 4.0 * z[6], self.drift[5] + 4.0 * z[7]
        if u[3] < self.p.wifi_outlier_per_fix:
            bearing, dist = 2 * math.pi * u[4], 200.0 + 1300.0 * u[5]
            return e + dist * math.sin(bearing), n + dist * math.cos(bearing), 20.0 + 20.0 * u[6]
        return e, n, acc

    def _cell(
        self, t: int, lat: float, lon: float, u: float, z0: float, z1: float
    ) -> tuple[float, float, float]:
        """Cell towers on a jittered grid; the device is served by the nearest, or a
        runner-up, and stays on it for minutes (so a stay's cell fixes agree)."""
        spacing = self.p.cell_spacing_m
        m_lat, m_lon = (float(v) for v in metres_per_degree(lat))
        if self.tower is not None and t < self.tower_until:
            tlat, tlon, radius = self.tower
            if math.hypot((tlat - lat) * m_lat, (tlon - lon) * m_lon) < 2.5 * spacing:
                return self._from_tower(lat, lon, m_lat, m_lon, z0, z1)
        y, x = lat * m_lat, lon * m_lon
        row, col = math.floor(y / spacing), math.floor(x / spacing)
        near = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                tn, te, radius = _tower(self.seed % 1000, spacing, row + dr, col + dc)
                ty, tx = (row + dr + 0.5) * spacing + tn, (col + dc + 0.5) * spacing + te
                near.append((math.hypot(ty - y, tx - x), ty / m_lat, tx / m_lon, radius))
        near.sort()
        pick = near[0] if u < 0.7 else near[1]
        self.tower = (pick[1], pick[2], pick[3])
        self.tower_until = t + int(120_000 + 480_000 * u)
        return self._from_tower(lat, lon, m_lat, m_lon, z0, z1)

    def _from_tower(
        self, lat: float, lon: float, m_lat: float, m_lon: float, z0: float, z1: float
    ) -> tuple[float, float, float]:
        assert self.tower is not None
        tlat, tlon, radius = self.tower
        return (tlon - lon) * m_lon + 40 * z0, (tlat - lat) * m_lat + 40 * z1, radius
