"""Everyday life in 莲都: local clock times, errands and the devices people wear.

Shared by the scored suite and the live demo, so both show the same kind of people.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from simulators import lishui
from simulators.device import Battery, DevicePlan
from simulators.geo import offset
from simulators.gps import GpsProfile
from simulators.route import Env, Mode, RouteBuilder, Track
from simulators.uplink import LinkPlan

TIMEZONE = "Asia/Shanghai"
TZ = ZoneInfo(TIMEZONE)


def local_ms(day: date, hour: float, days: int = 0) -> int:
    """Epoch ms of `hour` o'clock, `days` after `day`, Shanghai time. `hour` may be
    fractional, and past 24 for the small hours of the next day."""
    minute = round(hour * 60)
    days += minute // 1440
    h, m = divmod(minute % 1440, 60)
    return int(datetime.combine(day + timedelta(days=days), time(h, m), TZ).timestamp() * 1000)


def local_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, TZ).isoformat(timespec="seconds")


def minutes(lo: float, hi: float, rng: np.random.Generator) -> float:
    """A duration in seconds, between `lo` and `hi` minutes."""
    return float(rng.uniform(lo, hi)) * 60


def nearby(
    rng: np.random.Generator, lat: float, lon: float, lo_m: float, hi_m: float
) -> tuple[float, float]:
    r = rng.uniform(lo_m, hi_m)
    a = rng.uniform(0, 2 * math.pi)
    nlat, nlon = offset(lat, lon, r * math.sin(a), r * math.cos(a))
    return float(nlat), float(nlon)


def errand(
    b: RouteBuilder,
    rng: np.random.Generator,
    home: tuple[float, float],
    within_m: float = 2500.0,
    county: str = lishui.LIANDU,
) -> RouteBuilder:
    """Out to somewhere well inside the county and back: a shop, a relative, work."""
    place = lishui.interior_point(rng, county, min_depth_m=800, near=home, within_m=within_m)
    mode = Mode.WALK if math.dist(place, home) < 0.01 else Mode.EBIKE
    b.go(*place, mode)
    if rng.uniform() < 0.5:
        b.stay(minutes(20, 90, rng), Env.INDOOR)
    else:
        b.linger(minutes(15, 60, rng), radius_m=float(rng.uniform(30, 150)))
    return b.go(*home, mode)


def routine(
    b: RouteBuilder,
    rng: np.random.Generator,
    home: tuple[float, float],
    until: int,
    errands_per_h: float = 0.25,
) -> RouteBuilder:
    """Home (indoors) with errands now and then, until `until`, ending at home."""
    while b.now < until:
        stay = float(rng.exponential(3600 / errands_per_h))
        b.stay(min(stay, (until - b.now) / 1000), Env.INDOOR)
        if b.now < until - 2 * 3_600_000:
            errand(b, rng, home)
    return b


def seed_of(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def tag(
    rng: np.random.Generator,
    device: str,
    track: Track,
    gps: GpsProfile | None = None,
    **kw: Any,
) -> DevicePlan:
    """An ankle tag as fitted in 社区矫正: GNSS (often BeiDou) with wifi/LBS fallback,
    30–60 s reports, a battery that lasts days."""
    profile = gps or GpsProfile(gnss=str(rng.choice(["bds", "mixed", "gps"])))
    battery = Battery(
        start_pct=float(rng.uniform(55, 95)), drain_pct_h=float(rng.uniform(0.6, 1.5))
    )
    plan = DevicePlan(
        id=device,
        track=track,
        interval_s=float(rng.choice([30, 45, 60])),
        gps=profile,
        battery=battery,
        seed=seed_of(rng),
    )
    return replace(plan, **kw)


IOS_SHARE = 0.3  # of phones: iPhones, the rest Android
PHONE_GPS = GpsProfile(
    gnss="gps", indoor_mix=(0.2, 0.7, 0.1), excursions_per_h=0.15, multipath_per_fix=0.002
)


def phone(
    rng: np.random.Generator, device: str, track: Track, gps: GpsProfile = PHONE_GPS, **kw: Any
) -> DevicePlan:
    """A phone running OwnTracks (信息化核查 by phone instead of a tag), an iPhone or an
    Android phone."""
    battery = Battery(
        start_pct=float(rng.uniform(80, 100)), drain_pct_h=float(rng.uniform(1.5, 3.0))
    )
    seed = seed_of(rng)
    # Drawn apart from `rng`, so that the scenarios' other draws stay what they were.
    ios = np.random.default_rng((seed, 23)).uniform() < IOS_SHARE
    plan = DevicePlan(
        id=device,
        track=track,
        kind="phone",
        owntracks=f"{device.lower()}/phone",
        gps=gps,
        battery=battery,
        link=LinkPlan(latency_median_ms=1200),
        platform="ios" if ios else "android",
        seed=seed,
    )
    return replace(plan, **kw)


def traccar_phone(
    rng: np.random.Generator, device: str, track: Track, gps: GpsProfile = PHONE_GPS, **kw: Any
) -> DevicePlan:
    """A phone running the Traccar Client instead of OwnTracks: it posts its locations over
    HTTP in the OsmAnd protocol, known by the id it sends (eight digits, as the client
    makes one up)."""
    plan = phone(rng, device, track, gps, **kw)
    osmand_id = np.random.default_rng((plan.seed, 29)).integers(10**7, 10**8)
    return replace(plan, owntracks=None, osmand=str(osmand_id))
