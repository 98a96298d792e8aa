"""A person's true path: where they really are, second by second, and under what sky.

A `Track` is a time-indexed polyline (knots) with an environment for each stretch: the
environment decides what a device can see (open sky, indoors, in a car, under cover), and
so which error the GPS model draws. `RouteBuilder` writes one as a day reads: stay at home
indoors, walk to the shop, drive to 青田, linger in a field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from simulators.geo import FloatArray, displacement, distance_m, offset

IntArray = npt.NDArray[np.int64]


class Env(IntEnum):
    OUTDOOR = 0  # street, field: open sky
    INDOOR = 1  # in a building: weak GNSS, wifi, cell
    VEHICLE = 2  # car or bus: GNSS through the roof
    COVER = 3  # basement, garage, tunnel, foil: no GNSS at all


class Mode(IntEnum):
    WALK = 0
    EBIKE = 1  # 电动车: how most people cross a Chinese county town
    DRIVE = 2  # town streets
    ROAD = 3  # county roads and expressways


# (low, high) m/s; a leg's speed is drawn once, as a person keeps a pace
_SPEED = {
    Mode.WALK: (1.1, 1.5),
    Mode.EBIKE: (4.0, 6.5),
    Mode.DRIVE: (7.0, 12.0),
    Mode.ROAD: (16.0, 25.0),
}
_MODE_ENV = {Mode.WALK: Env.OUTDOOR, Mode.EBIKE: Env.OUTDOOR, Mode.DRIVE: Env.VEHICLE}


@dataclass(frozen=True)
class Sample:
    lat: FloatArray
    lon: FloatArray
    env: npt.NDArray[np.int8]
    spd: FloatArray  # m/s
    hdg: FloatArray  # degrees from north


@dataclass(frozen=True)
class Track:
    t: IntArray  # epoch ms, non-decreasing
    lat: FloatArray
    lon: FloatArray
    env: npt.NDArray[np.int8]  # environment from knot i to knot i+1 (the last one holds on)

    @property
    def start(self) -> int:
        return int(self.t[0])

    @property
    def end(self) -> int:
        return int(self.t[-1])

    def at(self, times: npt.ArrayLike) -> Sample:
        """Where the person is at `times` (epoch ms); before the start and after the end the
        person stays where the track starts or ends."""
        ts = np.asarray(times, dtype=np.int64)
        lat = np.interp(ts, self.t, self.lat)
        lon = np.interp(ts, self.t, self.lon)
        seg = np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, len(self.t) - 1)
        east, north = displacement(self.lat[:-1], self.lon[:-1], self.lat[1:], self.lon[1:])
        dt = np.diff(self.t) / 1000.0
        with np.errstate(divide="ignore", invalid="ignore"):
            speed = np.where(dt > 0, np.hypot(east, north) / dt, 0.0)
        heading = np.degrees(np.arctan2(east, north)) % 360
        moving = (seg < len(self.t) - 1) & (ts >= self.t[0])
        seg_c = np.minimum(seg, len(self.t) - 2)
        return Sample(
            lat=lat,
            lon=lon,
            env=self.env[seg],
            spd=np.where(moving, speed[seg_c], 0.0),
            hdg=np.where(moving, heading[seg_c], 0.0),
        )

    def shifted(self, ms: int) -> Track:
        return Track(self.t + ms, self.lat, self.lon, self.env)


class RouteBuilder:
    """Appends stays and legs to a path that starts at (`lat`, `lon`) at `t0` ms."""

    def __init__(self, rng: np.random.Generator, t0: int, lat: float, lon: float) -> None:
        self.rng = rng
        self._t = [t0]
        self._lat = [lat]
        self._lon = [lon]
        self._env: list[int] = []

    @property
    def now(self) -> int:
        return self._t[-1]

    @property
    def pos(self) -> tuple[float, float]:
        return self._lat[-1], self._lon[-1]

    def _knot(self, t: int, lat: float, lon: float, env: Env) -> None:
        self._env.append(int(env))
        self._t.append(t)
        self._lat.append(lat)
        self._lon.append(lon)

    def stay(self, seconds: float, env: Env = Env.INDOOR) -> RouteBuilder:
        lat, lon = self.pos
        self._knot(self.now + int(seconds * 1000), lat, lon, env)
        return self

    def stay_until(self, t: int, env: Env = Env.INDOOR) -> RouteBuilder:
        return self.stay(max(0, t - self.now) / 1000, env)

    def linger(self, seconds: float, radius_m: float, env: Env = Env.OUTDOOR) -> RouteBuilder:
        """Potter about within `radius_m` of here (a field, a market) for `seconds`."""
        lat0, lon0 = self.pos
        end = self.now + int(seconds * 1000)
        while self.now < end:
            pause = self.rng.uniform(30, 180)
            self.stay(min(pause, (end - self.now) / 1000), env)
            if self.now >= end:
                break
            r = radius_m * math.sqrt(self.rng.uniform())
            a = self.rng.uniform(0, 2 * math.pi)
            lat, lon = offset(lat0, lon0, r * math.sin(a), r * math.cos(a))
            self.go(float(lat), float(lon), Mode.WALK, env=env, wiggle=0.0)
        return self

    def go(
        self,
        lat: float,
        lon: float,
        mode: Mode = Mode.WALK,
        via: tuple[tuple[float, float], ...] = (),
        env: Env | None = None,
        wiggle: float = 0.04,
        speed: float | None = None,
    ) -> RouteBuilder:
        """Travel to (`lat`, `lon`) through `via`. Legs are straight lines bent a little
        every few hundred metres (sideways by `wiggle` × the piece's length), which is
        what a street grid looks like from a few fixes a minute."""
        pace = speed or float(self.rng.uniform(*_SPEED[mode]))
        leg_env = env if env is not None else _MODE_ENV.get(mode, Env.VEHICLE)
        for tlat, tlon in (*via, (lat, lon)):
            slat, slon = self.pos
            length = float(distance_m(slat, slon, tlat, tlon))
            pieces = max(1, int(length // 400))
            east, north = displacement(slat, slon, tlat, tlon)
            fr = np.arange(1, pieces + 1) / pieces
            side = self.rng.normal(0.0, wiggle * length / pieces, pieces)
            side[-1] = 0.0
            ux, uy = (float(east) / length, float(north) / length) if length else (0.0, 0.0)
            plat, plon = offset(
                slat, slon, fr * float(east) + side * uy, fr * float(north) - side * ux
            )
            for qlat, qlon in zip(plat.tolist(), plon.tolist(), strict=True):
                flat, flon = self.pos
                step = float(distance_m(flat, flon, qlat, qlon))
                self._knot(self.now + max(1, int(step / pace * 1000)), qlat, qlon, leg_env)
        return self

    def track(self) -> Track:
        env = [*self._env, self._env[-1] if self._env else int(Env.INDOOR)]
        return Track(
            t=np.array(self._t, dtype=np.int64),
            lat=np.array(self._lat),
            lon=np.array(self._lon),
            env=np.array(env, dtype=np.int8),
        )
