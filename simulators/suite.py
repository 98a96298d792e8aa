"""The scored scenario suite: `python -m simulators.suite OUT_DIR [--seed N]`.

Writes one spec 4.2 directory per (kind, seed) — zones.geojson, roster.json, pings.jsonl —
plus truth.json, the real breaches and faults (simulators.truth). Each kind is one hazard
a monitoring engine must get right; docs/scenarios.md describes them. Every scenario also
has one or two ordinary people going about their day inside 莲都, who keep the replay
clock moving and give an engine more chances to cry wolf.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from geofence.crs import wgs84_to_gcj02
from simulators import lishui
from simulators.build import Person, Scenario, UnintendedError, write
from simulators.checkins import minutes_of
from simulators.device import Battery, DevicePlan
from simulators.geo import distance_m, offset
from simulators.gps import GpsProfile
from simulators.life import (
    PHONE_GPS,
    errand,
    local_ms,
    minutes,
    nearby,
    phone,
    routine,
    tag,
    traccar_phone,
)
from simulators.places import EVERY_DAY, WEEKDAYS, block, circle, window
from simulators.route import Env, Mode, RouteBuilder, Track
from simulators.uplink import LinkPlan
from supervision.checkin_rules import Schedule

Recipe = Callable[[np.random.Generator], Scenario]
RECIPES: dict[str, Recipe] = {}
BASE_DAY = date(2025, 11, 17)  # a Monday
H = 3_600_000
MIN = 60_000
EXIT = frozenset({"jurisdiction_exit"})
QUIET: frozenset[str] = frozenset()
TAG_GPS = GpsProfile()


def recipe(fn: Recipe) -> Recipe:
    RECIPES[fn.__name__] = fn
    return fn


def _day(rng: np.random.Generator) -> date:
    return BASE_DAY + timedelta(days=int(rng.integers(0, 14)))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _device(
    rng: np.random.Generator,
    n: int,
    track: Track,
    tag_gps: GpsProfile = TAG_GPS,
    phone_gps: GpsProfile = PHONE_GPS,
    phones: float = 0.25,
    **kw: Any,
) -> DevicePlan:
    """A tag (most people) or, with chance `phones`, an OwnTracks phone."""
    if rng.uniform() < phones:
        return phone(rng, f"P{n:02d}", track, phone_gps, **kw)
    gnss = str(rng.choice(["bds", "mixed", "gps"]))
    return tag(rng, f"T{n:02d}", track, replace(tag_gps, gnss=gnss), **kw)


def _background(sc: Scenario, rng: np.random.Generator, first: int = 2) -> None:
    for n in range(first, first + int(rng.integers(1, 3))):
        home = lishui.interior_point(rng, min_depth_m=1500, within_m=6000)
        b = RouteBuilder(rng, sc.start, *home)
        track = routine(b, rng, home, sc.end).track()
        sc.add(Person(f"S{n:02d}", track, [_device(rng, n, track)]))


def _crossing_toward(
    rng: np.random.Generator, bearing: float, inside_m: float, outside_m: float
) -> lishui.Crossing:
    """A crossing whose outward direction is within 60° of `bearing`."""
    for _ in range(100):
        c = lishui.crossing(rng, inside_m, outside_m)
        if abs((c.outward - bearing + 180) % 360 - 180) < 60:
            return c
    raise UnintendedError(f"no crossing facing {bearing:.0f}°")


# -- the jurisdiction and its border ---------------------------------------------------------


@recipe
def border_drift(rng: np.random.Generator) -> Scenario:
    """Lives 60–300 m inside the border, indoors all evening: drift, and excursions of
    150–400 m off a facade facing the border, throw confident-looking fixes across the
    line for minutes. No breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 17), local_ms(day, 3, days=1))
    c = lishui.crossing(rng, _u(rng, 60, 300), 0)
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(60, 150, rng))
    track = errand(b, rng, c.inside, within_m=2000).stay_until(sc.end).track()
    rate = _u(rng, 0.5, 1.0)
    tag_gps, phone_gps = (
        replace(p, excursions_per_h=rate, excursion_m=(150.0, 400.0), excursion_bearing=c.outward)
        for p in (TAG_GPS, PHONE_GPS)
    )
    device = _device(rng, 1, track, tag_gps, phone_gps, phones=0.3)
    sc.add(Person("S01", track, [device]))
    _background(sc, rng)
    return sc


@recipe
def exit_walk(rng: np.random.Generator) -> Scenario:
    """Walks or rides an e-bike 0.7–2 km over the border; comes back, or stays out."""
    day = _day(rng)
    start = local_ms(day, _u(rng, 8, 14))
    sc = Scenario(start, start + 6 * H)
    c = lishui.crossing(rng, _u(rng, 300, 1500), _u(rng, 700, 2000))
    mode = Mode.WALK if rng.uniform() < 0.5 else Mode.EBIKE
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(20, 90, rng))
    b.go(*c.outside, mode)
    if rng.uniform() < 0.5:
        b.linger(minutes(30, 150, rng), _u(rng, 100, 300))
    else:
        b.stay(minutes(30, 150, rng), Env.INDOOR)
    if rng.uniform() < 0.5:
        b.go(*c.inside, mode)
    track = b.stay_until(sc.end).track()
    sc.add(Person("S01", track, [_device(rng, 1, track)], expect=EXIT))
    _background(sc, rng)
    return sc


@recipe
def exit_drive(rng: np.random.Generator) -> Scenario:
    """Drives from town into a neighbouring county, 5–10 km past the border; stays there for
    hours, and comes back or not."""
    day = _day(rng)
    start = local_ms(day, _u(rng, 7, 13))
    sc = Scenario(start, start + 8 * H)
    home = lishui.interior_point(rng, min_depth_m=2000, within_m=5000)
    c = lishui.crossing(rng, _u(rng, 1500, 3000), _u(rng, 2000, 4000))
    dest = lishui.interior_point(rng, c.neighbour, min_depth_m=1500, near=c.outside, within_m=5000)
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 120, rng))
    b.go(*c.inside, Mode.ROAD).go(*c.outside, Mode.ROAD).go(*dest, Mode.DRIVE)
    b.stay(minutes(60, 180, rng), Env.INDOOR)
    if rng.uniform() < 0.5:
        b.go(*c.outside, Mode.DRIVE).go(*c.inside, Mode.ROAD).go(*home, Mode.DRIVE)
    track = b.stay_until(sc.end).track()
    sc.add(Person("S01", track, [_device(rng, 1, track)], expect=EXIT))
    _background(sc, rng)
    return sc


@recipe
def exit_shallow(rng: np.random.Generator) -> Scenario:
    """Works a field 150–400 m beyond the border for 20–60 min under open sky: a small but
    unmistakable breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 9), local_ms(day, 14))
    c = lishui.crossing(rng, _u(rng, 150, 400), _u(rng, 150, 400))
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(30, 120, rng))
    b.go(*c.outside, Mode.WALK).linger(minutes(20, 60, rng), 40)
    track = b.go(*c.inside, Mode.WALK).stay_until(sc.end).track()
    sc.add(Person("S01", track, [_device(rng, 1, track, phones=0.15)], expect=EXIT))
    _background(sc, rng)
    return sc


@recipe
def multipath_border(rng: np.random.Generator) -> Scenario:
    """Farm work for hours in a field 120–300 m inside the border, among multipath spikes
    hundreds of metres long with small, lying accuracies. No breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 16))
    c = lishui.crossing(rng, _u(rng, 120, 300), 0)
    home = lishui.interior_point(rng, min_depth_m=800, near=c.inside, within_m=2500)
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 60, rng))
    b.go(*c.inside, Mode.EBIKE).linger(minutes(120, 240, rng), 40)
    track = b.go(*home, Mode.EBIKE).stay_until(sc.end).track()
    gps = replace(TAG_GPS, multipath_per_fix=_u(rng, 0.02, 0.04), gnss_sigma_m=4.0)
    phone_gps = replace(PHONE_GPS, multipath_per_fix=_u(rng, 0.02, 0.04))
    sc.add(Person("S01", track, [_device(rng, 1, track, gps, phone_gps, phones=0.2)]))
    _background(sc, rng)
    return sc


@recipe
def cell_border(rng: np.random.Generator) -> Scenario:
    """Lives 0.3–1.2 km inside the border in a concrete block where the device mostly gets
    cell (LBS) fixes, 1–2 km off. No breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 18), local_ms(day, 6, days=1))
    c = lishui.crossing(rng, _u(rng, 300, 1200), 0)
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(30, 120, rng))
    track = errand(b, rng, c.inside, within_m=2000).stay_until(sc.end).track()
    gps = replace(TAG_GPS, indoor_mix=(0.15, 0.15, 0.7))
    phone_gps = replace(PHONE_GPS, indoor_mix=(0.05, 0.35, 0.6))
    sc.add(Person("S01", track, [_device(rng, 1, track, gps, phone_gps, phones=0.3)]))
    _background(sc, rng)
    return sc


@recipe
def cell_exit(rng: np.random.Generator) -> Scenario:
    """A tag in power-saving mode (cell and wifi only) is driven 6+ km into a neighbouring
    county and stays there: coarse fixes, but far enough out to be certain."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 18))
    home = lishui.interior_point(rng, min_depth_m=2000, within_m=5000)
    neighbour = str(rng.choice([lishui.QINGTIAN, lishui.JINYUN, lishui.SONGYANG]))
    c = lishui.crossing(rng, 2000, 3000, neighbour)
    dest = lishui.interior_point(rng, neighbour, min_depth_m=6000, near=c.outside, within_m=15000)
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 120, rng))
    b.go(*c.inside, Mode.ROAD).go(*c.outside, Mode.ROAD).go(*dest, Mode.ROAD)
    track = b.stay_until(sc.end, Env.INDOOR).track()
    gps = replace(TAG_GPS, gnss_off=True)
    sc.add(Person("S01", track, [tag(rng, "T01", track, gps)], expect=EXIT))
    _background(sc, rng)
    return sc


@recipe
def gcj02_device(rng: np.random.Generator) -> Scenario:
    """A tag whose firmware reports GCJ-02 (and says so), living 150–450 m inside the
    south-eastern border, where the GCJ-02 offset points outwards; half walk out for real."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 16))
    # Near 丽水 GCJ-02 moves a point ~430 m east and ~380 m south: bearing ~131°.
    leaves = rng.uniform() < 0.5
    c = _crossing_toward(rng, 131.0, _u(rng, 150, 450), _u(rng, 800, 1500) if leaves else 0)
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(60, 120, rng))
    if leaves:
        b.go(*c.outside, Mode.WALK).linger(minutes(40, 90, rng), 100)
        b.go(*c.inside, Mode.WALK)
    else:
        b.linger(minutes(60, 120, rng), 60)
    track = b.stay_until(sc.end).track()
    device = tag(rng, "T01", track, crs="gcj02")
    sc.add(Person("S01", track, [device], expect=EXIT if leaves else QUIET))
    _background(sc, rng)
    return sc


# -- exclusion zones -------------------------------------------------------------------------


@recipe
def exclusion_gcj02(rng: np.random.Generator) -> Scenario:
    """A prohibition zone drawn on an Amap (GCJ-02): a circle round the victim's home, or a
    school. The person spends an hour where the zone would be if its coordinates were
    misread as WGS-84; half of them later go into the real zone."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 19))
    place = lishui.interior_point(rng, min_depth_m=2000, within_m=4000)
    if rng.uniform() < 0.5:
        zone = circle(
            "X-S01", "exclusion", *place, _u(rng, 150, 300), crs="gcj02", name="被害人住所"
        )
    else:
        zone = block(
            "X-S01", "exclusion", *place, 220, 160, _u(rng, 0, 90), crs="gcj02", name="学校"
        )
    glat, glon = wgs84_to_gcj02(*place)
    misread = (float(glat), float(glon))
    home = lishui.interior_point(rng, min_depth_m=800, near=misread, within_m=2000)
    if distance_m(*home, *place) < 1000:
        raise UnintendedError("home too close to the zone")
    enters = rng.uniform() < 0.5
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 120, rng))
    b.go(*misread, Mode.WALK).linger(minutes(30, 70, rng), 40).go(*home, Mode.WALK)
    b.stay(minutes(60, 180, rng))
    if enters:
        b.go(*place, Mode.WALK).linger(minutes(10, 40, rng), 40).go(*home, Mode.WALK)
    track = b.stay_until(sc.end).track()
    expect = frozenset({"exclusion_enter"}) if enters else QUIET
    sc.add(
        Person("S01", track, [_device(rng, 1, track)], exclusion=(sc.zone(zone),), expect=expect)
    )
    _background(sc, rng)
    return sc


@recipe
def exclusion_window(rng: np.random.Generator) -> Scenario:
    """A school banned on school days 07:00–17:30. The person walks straight through it in
    the evening (allowed) and, some mornings, hangs about inside it (a breach on a weekday,
    nothing at the weekend)."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 6.5), local_ms(day, 20.5))
    school = lishui.interior_point(rng, min_depth_m=1500, within_m=4000)
    crs = str(rng.choice(["wgs84", "gcj02"]))
    zone = block(
        "X-S01",
        "exclusion",
        *school,
        220,
        160,
        _u(rng, 0, 90),
        crs=crs,
        name="学校",
        schedule=[window(WEEKDAYS, "07:00", "17:30")],
    )
    home = nearby(rng, *school, 900, 1500)
    enters = rng.uniform() < 0.5
    b = RouteBuilder(rng, sc.start, *home).stay_until(local_ms(day, _u(rng, 7.3, 8.2)))
    if enters:
        b.go(*school, Mode.WALK).linger(minutes(15, 30, rng), 30).go(*home, Mode.WALK)
    b.stay_until(local_ms(day, _u(rng, 18, 19.5)))
    beyond = nearby(rng, *school, 500, 700)
    b.go(*beyond, Mode.WALK, via=(school,)).linger(minutes(10, 30, rng), 50).go(*home, Mode.WALK)
    track = b.stay_until(sc.end).track()
    expect = frozenset({"exclusion_enter"}) if enters and day.isoweekday() <= 5 else QUIET
    sc.add(
        Person("S01", track, [_device(rng, 1, track)], exclusion=(sc.zone(zone),), expect=expect)
    )
    _background(sc, rng)
    return sc


@recipe
def exclusion_night(rng: np.random.Generator) -> Scenario:
    """An entertainment venue banned 20:00–02:00 (the window runs past midnight). An
    afternoon visit is allowed; half also go back late at night, indoors, where drift keeps
    carrying fixes in and out of the small zone."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 12), local_ms(day, 2.5, days=1))
    venue = lishui.interior_point(rng, min_depth_m=1500, within_m=3000)
    zone = circle(
        "X-S01",
        "exclusion",
        *venue,
        _u(rng, 100, 160),
        crs=str(rng.choice(["wgs84", "gcj02"])),
        name="娱乐场所",
        schedule=[window(EVERY_DAY, "20:00", "02:00")],
    )
    home = nearby(rng, *venue, 1500, 3000)
    enters = rng.uniform() < 0.5
    b = RouteBuilder(rng, sc.start, *home).stay_until(local_ms(day, _u(rng, 14, 15.5)))
    b.go(*venue, Mode.EBIKE).stay(minutes(30, 60, rng), Env.INDOOR).go(*home, Mode.EBIKE)
    if enters:
        b.stay_until(local_ms(day, _u(rng, 22.5, 23.5)))
        b.go(*venue, Mode.EBIKE).stay(minutes(40, 120, rng), Env.INDOOR).go(*home, Mode.EBIKE)
    track = b.stay_until(sc.end).track()
    expect = frozenset({"exclusion_enter"}) if enters else QUIET
    sc.add(
        Person("S01", track, [_device(rng, 1, track)], exclusion=(sc.zone(zone),), expect=expect)
    )
    _background(sc, rng)
    return sc


# -- curfews ---------------------------------------------------------------------------------


def _home_zone(rng: np.random.Generator, home: tuple[float, float], start: str) -> dict:
    crs = str(rng.choice(["wgs84", "gcj02"]))
    schedule = [window(EVERY_DAY, start, "06:00")]
    if rng.uniform() < 0.5:
        return circle(
            "H-S01", "home", *home, _u(rng, 80, 200), crs=crs, name="居住地", schedule=schedule
        )
    return block(
        "H-S01",
        "home",
        *home,
        _u(rng, 150, 250),
        _u(rng, 120, 200),
        _u(rng, 0, 90),
        crs=crs,
        name="居住小区",
        schedule=schedule,
    )


def _curfew_home(rng: np.random.Generator) -> tuple[float, float]:
    if rng.uniform() < 0.3:
        return lishui.crossing(rng, _u(rng, 300, 800), 0).inside
    return lishui.interior_point(rng, min_depth_m=1000, within_m=6000)


@recipe
def curfew_home(rng: np.random.Generator) -> Scenario:
    """Home by 21:45 and indoors all night inside a 80–250 m home zone, with drift
    excursions bigger than the zone. No breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 19), local_ms(day, 7, days=1))
    home = _curfew_home(rng)
    zone = _home_zone(rng, home, str(rng.choice(["21:00", "22:00"])))
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(10, 40, rng))
    b.go(*nearby(rng, *home, 500, 1500), Mode.WALK).linger(minutes(20, 40, rng), 60)
    b.go(*home, Mode.WALK)
    track = b.stay_until(sc.end).track()
    gps = replace(TAG_GPS, excursions_per_h=_u(rng, 0.4, 0.8))
    device = _device(rng, 1, track, gps, replace(PHONE_GPS, excursions_per_h=0.4))
    sc.add(Person("S01", track, [device], home=sc.zone(zone)))
    _background(sc, rng)
    return sc


@recipe
def curfew_late(rng: np.random.Generator) -> Scenario:
    """Curfew 22:00–06:00. Either comes home late (22:20–00:30) from a friend's, or is home
    on time and slips out after midnight for an hour or two."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 18), local_ms(day, 6.5, days=1))
    home = _curfew_home(rng)
    zone = _home_zone(rng, home, "22:00")
    friend = lishui.interior_point(rng, min_depth_m=1000, near=home, within_m=5000)
    if distance_m(*friend, *home) < 1500:
        raise UnintendedError("friend too close")
    b = RouteBuilder(rng, sc.start, *home)
    if rng.uniform() < 0.5:
        b.stay(minutes(10, 60, rng)).go(*friend, Mode.EBIKE)
        b.stay_until(local_ms(day, _u(rng, 22.33, 24.5)))
        b.go(*home, Mode.EBIKE)
    else:
        b.stay_until(local_ms(day, _u(rng, 24.5, 26.5)))
        b.go(*friend, Mode.EBIKE).linger(minutes(40, 120, rng), 80).go(*home, Mode.EBIKE)
    track = b.stay_until(sc.end).track()
    sc.add(
        Person(
            "S01",
            track,
            [_device(rng, 1, track)],
            home=sc.zone(zone),
            expect=frozenset({"curfew_breach"}),
        )
    )
    _background(sc, rng)
    return sc


# -- leave -----------------------------------------------------------------------------------


def _away(
    rng: np.random.Generator, sc: Scenario, day: date, county: str
) -> tuple[RouteBuilder, tuple[float, float]]:
    """Leaves home between 08:15 and 09:30 and drives to the seat of `county`."""
    home = lishui.interior_point(rng, min_depth_m=1500, within_m=5000)
    dest = lishui.interior_point(rng, county, min_depth_m=1500, within_m=4000)
    b = RouteBuilder(rng, sc.start, *home).stay_until(local_ms(day, _u(rng, 8.25, 9.5)))
    b.go(*dest, Mode.ROAD)
    return b, home


@recipe
def leave_trip(rng: np.random.Generator) -> Scenario:
    """Approved leave to a neighbouring county: drives there, spends the day, is back
    before the leave ends. No breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 21.5))
    county = str(rng.choice(lishui.LIANDU_NEIGHBOURS))
    b, home = _away(rng, sc, day, county)
    b.linger(minutes(60, 120, rng), 200).stay(minutes(90, 240, rng), Env.INDOOR)
    b.go(*home, Mode.ROAD)
    leave = (local_ms(day, 8), b.now + int(_u(rng, 0.5, 3) * H), (county,))
    track = b.stay_until(sc.end).track()
    sc.add(Person("S01", track, [_device(rng, 1, track)], leaves=[leave]))
    _background(sc, rng)
    return sc


@recipe
def leave_overdue(rng: np.random.Generator) -> Scenario:
    """Leave to a neighbouring county ends while the person is still there: from that
    moment it is a jurisdiction exit, until they are back (or for good)."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 23))
    county = str(rng.choice(lishui.LIANDU_NEIGHBOURS))
    b, home = _away(rng, sc, day, county)
    leave_end = b.now + int(_u(rng, 1, 3) * H)
    b.stay_until(leave_end + int(_u(rng, 40, 180) * MIN), Env.INDOOR)
    if rng.uniform() < 0.7:
        b.go(*home, Mode.ROAD)
    track = b.stay_until(sc.end).track()
    leave = (local_ms(day, 8), leave_end, (county,))
    sc.add(Person("S01", track, [_device(rng, 1, track)], leaves=[leave], expect=EXIT))
    _background(sc, rng)
    return sc


@recipe
def leave_transit(rng: np.random.Generator) -> Scenario:
    """Leave to 龙泉, which is not a neighbour: the road runs through 云和 both ways. Some
    stop in 云和 for an hour or two on the way back (outside both jurisdiction and
    destination while on leave: optional in the truth); some are back after the leave
    ended (a breach from its end)."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 6), local_ms(day, 23.75))
    home = lishui.interior_point(rng, min_depth_m=1500, within_m=5000)
    via = lishui.interior_point(rng, lishui.YUNHE, min_depth_m=1000, within_m=3000)
    dest = lishui.interior_point(rng, lishui.LONGQUAN, min_depth_m=1500, within_m=4000)
    b = RouteBuilder(rng, sc.start, *home).stay_until(local_ms(day, _u(rng, 7.25, 8)))
    b.go(*via, Mode.ROAD).go(*dest, Mode.ROAD).stay(minutes(180, 300, rng), Env.INDOOR)
    variant = int(rng.integers(3))
    leave_end = b.now - int(_u(rng, 30, 60) * MIN)
    b.go(*via, Mode.ROAD)
    if variant == 1:
        b.stay(minutes(60, 120, rng), Env.INDOOR)
    b.go(*home, Mode.ROAD)
    if variant != 2:
        leave_end = b.now + int(_u(rng, 0.5, 2) * H)
    track = b.stay_until(sc.end).track()
    leave = (local_ms(day, 7), leave_end, (lishui.LONGQUAN,))
    expect = EXIT if variant == 2 else QUIET
    sc.add(Person("S01", track, [_device(rng, 1, track)], leaves=[leave], expect=expect))
    _background(sc, rng)
    return sc


@recipe
def leave_elsewhere(rng: np.random.Generator) -> Scenario:
    """Leave to one neighbouring county; the person drives to another instead and stays
    there (a breach once the stop outlasts any errand on the road), or goes where the leave
    says, perhaps after a short stop for fuel in a third county (no breach)."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 20))
    county, other = (str(c) for c in rng.choice(lishui.LIANDU_NEIGHBOURS, 2, replace=False))
    elsewhere = rng.uniform() < 0.6
    refuel = not elsewhere and rng.uniform() < 0.5
    b, home = _away(rng, sc, day, other if elsewhere or refuel else county)
    if refuel:
        b.stay(minutes(4, 10, rng), Env.OUTDOOR)
        b.go(*lishui.interior_point(rng, county, min_depth_m=1500, within_m=4000), Mode.ROAD)
    b.linger(minutes(20, 60, rng), 150).stay(minutes(60, 180, rng), Env.INDOOR)
    b.go(*home, Mode.ROAD)
    leave = (local_ms(day, 8), b.now + int(_u(rng, 0.5, 2) * H), (county,))
    track = b.stay_until(sc.end).track()
    expect = EXIT if elsewhere else QUIET
    sc.add(Person("S01", track, [_device(rng, 1, track)], leaves=[leave], expect=expect))
    _background(sc, rng)
    return sc


# -- late and repeated data ------------------------------------------------------------------


@recipe
def buffered_breach(rng: np.random.Generator) -> Scenario:
    """Crosses the border where there is no coverage: the fixes of the breach arrive in a
    batch afterwards (a late-detectable breach). A third are still out when the network
    comes back."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 9), local_ms(day, 17))
    c = lishui.crossing(rng, _u(rng, 500, 1500), _u(rng, 800, 2000))
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(30, 90, rng))
    t_leave = b.now
    b.go(*c.outside, Mode.EBIKE)
    t_out = b.now
    b.linger(minutes(20, 50, rng), 150)
    gap_start = t_leave - int(_u(rng, 2, 8) * MIN)
    if rng.uniform() < 2 / 3:
        b.go(*c.inside, Mode.EBIKE)
        gap = (gap_start, b.now + int(_u(rng, 2, 8) * MIN))
    else:
        gap = (gap_start, t_out + int(_u(rng, 10, 20) * MIN))
    track = b.stay_until(sc.end).track()
    link = LinkPlan(
        gaps=(gap,),
        backlog_first=bool(rng.uniform() < 0.5),
        batch_max=int(rng.choice([10, 30, 50])),
        resend_on_reconnect=int(rng.integers(0, 4)),
    )
    sc.add(Person("S01", track, [_device(rng, 1, track, phones=0.2, link=link)], expect=EXIT))
    _background(sc, rng)
    return sc


def _gaps(
    rng: np.random.Generator, start: int, end: int, count: int
) -> tuple[tuple[int, int], ...]:
    span = (end - start) // count
    gaps = []
    for k in range(count):
        a = start + k * span + int(_u(rng, 0.1, 0.5) * span)
        gaps.append((a, a + int(_u(rng, 8, 45) * MIN)))
    return tuple(gaps)


@recipe
def buffered_inside(rng: np.random.Generator) -> Scenario:
    """Coverage comes and goes in the hills inside 莲都: batches of old fixes arrive after
    newer live ones. No breach."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 16))
    home = lishui.crossing(rng, _u(rng, 300, 1500), 0).inside
    track = routine(RouteBuilder(rng, sc.start, *home), rng, home, sc.end, 0.5).track()
    link = LinkPlan(
        gaps=_gaps(rng, sc.start + 30 * MIN, sc.end - 60 * MIN, int(rng.integers(2, 4))),
        backlog_first=False,
        batch_max=20,
        redeliver=0.01,
    )
    sc.add(Person("S01", track, [_device(rng, 1, track, phones=0.2, link=link)]))
    _background(sc, rng)
    return sc


@recipe
def qos_redelivery(rng: np.random.Generator) -> Scenario:
    """One real exit and return, over a link that delivers 5–15% of messages twice (often
    after newer ones) and resends its in-flight messages after a short outage: old
    'outside' fixes keep arriving after the person is back."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 16))
    c = lishui.crossing(rng, _u(rng, 300, 1200), _u(rng, 700, 1500))
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(20, 60, rng))
    b.go(*c.outside, Mode.WALK).linger(minutes(30, 90, rng), 150).go(*c.inside, Mode.WALK)
    back = b.now
    track = b.stay_until(sc.end).track()
    gap_at = back + int(_u(rng, 5, 30) * MIN)
    link = LinkPlan(
        gaps=((gap_at, gap_at + int(_u(rng, 3, 6) * MIN)),),
        redeliver=_u(rng, 0.05, 0.15),
        resend_on_reconnect=5,
    )
    sc.add(Person("S01", track, [_device(rng, 1, track, phones=0.2, link=link)], expect=EXIT))
    _background(sc, rng)
    return sc


@recipe
def shuffled_uplink(rng: np.random.Generator) -> Scenario:
    """One walk out of 莲都 (and perhaps back), over a link that delivers each message about
    1.6 times in scrambled order, with a buffered upload in the middle: one breach, one
    alert, whatever order the evidence comes in."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 16))
    c = lishui.crossing(rng, _u(rng, 300, 1200), _u(rng, 700, 1500))
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(20, 60, rng))
    t_leave = b.now
    b.go(*c.outside, Mode.WALK).linger(minutes(20, 60, rng), 150)
    if rng.uniform() < 0.6:
        b.go(*c.inside, Mode.WALK)
    track = b.stay_until(sc.end).track()
    gap_at = t_leave + int(_u(rng, -5, 10) * MIN)
    link = LinkPlan(
        gaps=((gap_at, gap_at + int(_u(rng, 3, 12) * MIN)),),
        batch_max=int(rng.choice([5, 10, 30])),
        redeliver=_u(rng, 0.5, 0.7),
        resend_on_reconnect=int(rng.integers(0, 6)),
        shuffle_ms=_u(rng, 60_000, 300_000),
    )
    sc.add(Person("S01", track, [_device(rng, 1, track, phones=0.2, link=link)], expect=EXIT))
    _background(sc, rng)
    return sc


# -- device faults ---------------------------------------------------------------------------


def _homebody(rng: np.random.Generator, sc: Scenario) -> Track:
    home = lishui.interior_point(rng, min_depth_m=1500, within_m=6000)
    return routine(RouteBuilder(rng, sc.start, *home), rng, home, sc.end).track()


@recipe
def device_offline(rng: np.random.Generator) -> Scenario:
    """The tag stops: switched off (power_off, perhaps back later), or silent for good
    (smashed, SIM pulled), while the other devices keep reporting."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 18))
    track = _homebody(rng, sc)
    t = sc.start + int(_u(rng, 2, 5) * H)
    variant = int(rng.integers(3))
    back = t + int(_u(rng, 60, 180) * MIN)
    off: tuple[tuple[int, int | None], ...] = ()
    silent: tuple[tuple[int, int | None], ...] = ()
    if variant == 0:
        off = ((t, back),)
    elif variant == 1:
        off = ((t, None),)
    else:
        silent = ((t, None if rng.uniform() < 0.5 else back),)
    sc.add(Person("S01", track, [tag(rng, "T01", track, off=off, silent=silent)]))
    _background(sc, rng)
    return sc


@recipe
def no_fix(rng: np.random.Generator) -> Scenario:
    """Works 40–120 min in a basement (or wraps the tag in foil): the tag reports without a
    position. Short blackouts (lift, garage) elsewhere are not faults."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 18))
    home = lishui.interior_point(rng, min_depth_m=1500, within_m=6000)
    cellar = lishui.interior_point(rng, min_depth_m=1000, near=home, within_m=2000)
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 90, rng))
    for _ in range(int(rng.integers(1, 4))):
        b.stay(_u(rng, 40, 150), Env.COVER).stay(minutes(20, 60, rng))
    b.go(*cellar, Mode.EBIKE).stay(minutes(40, 120, rng), Env.COVER).go(*home, Mode.EBIKE)
    track = routine(b, rng, home, sc.end).track()
    sc.add(Person("S01", track, [tag(rng, "T01", track, replace(TAG_GPS, cover_cell=0.0))]))
    _background(sc, rng)
    return sc


@recipe
def low_battery(rng: np.random.Generator) -> Scenario:
    """The battery runs down through 20%: charged at 5–8%, or dead (and perhaps charged
    back to life an hour or two later)."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 24))
    track = _homebody(rng, sc)
    level, drain = _u(rng, 24, 32), _u(rng, 2.5, 4)
    variant = int(rng.integers(3))
    charging: tuple[tuple[int, int], ...] = ()
    if variant == 0:
        t = sc.start + int((level - _u(rng, 5, 8)) / drain * H)
        charging = ((t, t + 4 * H),)
    elif variant == 2:
        t = sc.start + int((level - 1) / drain * H) + int(_u(rng, 1, 2) * H)
        charging = ((t, t + 4 * H),)
    battery = Battery(start_pct=level, drain_pct_h=drain, charging=charging)
    sc.add(Person("S01", track, [_device(rng, 1, track, phones=0.2, battery=battery)]))
    _background(sc, rng)
    return sc


@recipe
def strap_tamper(rng: np.random.Generator) -> Scenario:
    """The strap is cut, or opened for 5–20 minutes and closed again; sometimes while the
    tag has no network, so the tamper arrives late in a batch."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 9), local_ms(day, 17))
    track = _homebody(rng, sc)
    t = sc.start + int(_u(rng, 1, 5) * H)
    variant = int(rng.integers(3))
    link = LinkPlan()
    if variant == 1:
        strap: tuple[tuple[int, str], ...] = ((t, "open"), (t + int(_u(rng, 5, 20) * MIN), "ok"))
    else:
        strap = ((t, "cut"),)
    if variant == 2:
        link = LinkPlan(gaps=((t - int(_u(rng, 5, 15) * MIN), t + int(_u(rng, 10, 30) * MIN)),))
    sc.add(Person("S01", track, [tag(rng, "T01", track, strap=strap, link=link)]))
    _background(sc, rng)
    return sc


@recipe
def routine_day(rng: np.random.Generator) -> Scenario:
    """An ordinary day for three or four people, some living near the border, tags and
    phones: nothing happens, and an engine should say nothing."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 6), local_ms(day, 22))
    for n in range(1, int(rng.integers(4, 6))):
        if rng.uniform() < 0.4:
            home = lishui.crossing(rng, _u(rng, 300, 1500), 0).inside
        else:
            home = lishui.interior_point(rng, min_depth_m=1000, within_m=8000)
        b = RouteBuilder(rng, sc.start, *home)
        track = routine(b, rng, home, sc.end, 0.3).track()
        sc.add(Person(f"S{n:02d}", track, [_device(rng, n, track, phones=0.35)]))
    return sc


@recipe
def owntracks_real(rng: np.random.Generator) -> Scenario:
    """A phone's OwnTracks app as it really sends: an iPhone (-1 for a speed or course it
    has not got, its will's `tst` a string) or an Android phone (a will without `tst`). A
    15–40 min coverage gap, after which the queued locations come as one JSON array; in
    the evening the phone is switched off and the broker publishes its will. Half drive
    3–8 km over the border and stay there for hours."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 22))
    exits = rng.uniform() < 0.5
    c = lishui.crossing(rng, _u(rng, 800, 2500), _u(rng, 3000, 8000) if exits else 0)
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(60, 180, rng), Env.INDOOR)
    if exits:
        b.go(*c.outside, Mode.ROAD).stay(minutes(120, 300, rng), Env.INDOOR)
    else:
        errand(b, rng, c.inside, within_m=3000)
    track = b.stay_until(sc.end).track()
    gap_at = sc.start + int(_u(rng, 0.5, 6) * H)
    gap = (gap_at, gap_at + int(_u(rng, 15, 40) * MIN))
    off = ((sc.end - int(_u(rng, 2.5, 4) * H), None),)
    platform = "ios" if rng.uniform() < 0.5 else "android"
    link = LinkPlan(gaps=(gap,), latency_median_ms=1200)
    device = phone(rng, "P01", track, platform=platform, link=link, off=off)
    sc.add(Person("S01", track, [device], expect=EXIT if exits else QUIET))
    _background(sc, rng)
    return sc


@recipe
def osmand_phone(rng: np.random.Generator) -> Scenario:
    """Two phones running the Traccar Client, which posts over HTTP in the OsmAnd protocol
    (spec 4.1b): one is carried 1–3 km over the border on foot or by e-bike and stays out
    for one to three hours; the other's wearer lives 0.4–1.5 km inside the border and
    goes about the day."""
    day = _day(rng)
    start = local_ms(day, _u(rng, 8, 13))
    sc = Scenario(start, start + 6 * H)
    c = lishui.crossing(rng, _u(rng, 500, 2000), _u(rng, 1000, 3000))
    mode = Mode.WALK if rng.uniform() < 0.5 else Mode.EBIKE
    b = RouteBuilder(rng, sc.start, *c.inside).stay(minutes(20, 90, rng), Env.INDOOR)
    b.go(*c.outside, mode).stay(minutes(60, 180, rng), Env.INDOOR)
    track = b.stay_until(sc.end).track()
    sc.add(Person("S01", track, [traccar_phone(rng, "P01", track)], expect=EXIT))
    home = lishui.crossing(rng, _u(rng, 400, 1500), 0).inside
    track = routine(RouteBuilder(rng, sc.start, *home), rng, home, sc.end, 0.4).track()
    sc.add(Person("S02", track, [traccar_phone(rng, "P02", track)], expect=QUIET))
    _background(sc, rng, first=3)
    return sc


# -- people near people (禁止接触, 聚集) -------------------------------------------------------
# Tags only: a phone in significant-move mode reports every 5–15 min when still, and a
# fix minutes old places nobody (docs/rules.md), so phones are left to the other kinds.


def _along(point: tuple[float, float], bearing: float, metres: float) -> tuple[float, float]:
    a = math.radians(bearing)
    lat, lon = offset(point[0], point[1], metres * math.sin(a), metres * math.cos(a))
    return float(lat), float(lon)


def _no_contact(sc: Scenario, *people: str) -> None:
    sc.no_contact.append({"id": "NC-01", "people": list(people), "distance_m": 200})


def _meet(
    rng: np.random.Generator,
    sc: Scenario,
    n: int,
    place: tuple[float, float],
    arrive: int,
    leave: int,
    spread_m: float,
) -> None:
    """Person n comes from a home 1–2.5 km away to `place` by `arrive` (setting off an hour
    before, give or take five minutes: a walk there takes at most 35), potters about within
    `spread_m` of it until `leave` and goes home."""
    home = nearby(rng, *place, 1000, 2500)
    mode = Mode.WALK if rng.uniform() < 0.5 else Mode.EBIKE
    b = RouteBuilder(rng, sc.start, *home).stay_until(arrive - int(_u(rng, 55, 65) * MIN))
    b.go(*place, mode).linger(max(0, leave - b.now) / 1000, spread_m).go(*home, mode)
    track = b.stay_until(sc.end).track()
    sc.add(Person(f"S{n:02d}", track, [tag(rng, f"T{n:02d}", track)]))


@recipe
def contact_meeting(rng: np.random.Generator) -> Scenario:
    """Two people under a no-contact order meet in a park or square for 20–60 minutes:
    a contact for each of them."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 9), local_ms(day, 15))
    place = lishui.interior_point(rng, min_depth_m=4000, within_m=6000)
    arrive = sc.start + int(_u(rng, 1.5, 2) * H)
    leave = arrive + int(_u(rng, 20, 60) * MIN)
    for n in (1, 2):
        _meet(rng, sc, n, place, arrive, leave, _u(rng, 10, 25))
    _no_contact(sc, "S01", "S02")
    _background(sc, rng, first=3)
    return sc


@recipe
def contact_passing(rng: np.random.Generator) -> Scenario:
    """Two people under a no-contact order, living 2.4 km apart on one street, set off
    towards each other's end of it on foot or by e-bike at the same time, pass and go on:
    within 200 m of each other for a few minutes at most. No alert."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 8), local_ms(day, 12))
    middle = lishui.interior_point(rng, min_depth_m=4000, within_m=6000)
    bearing = _u(rng, 0, 180)
    ends = (_along(middle, bearing, -1200), _along(middle, bearing, 1200))
    leave = sc.start + int(_u(rng, 0.5, 1.5) * H)
    for n, (home, there) in enumerate((ends, ends[::-1]), 1):
        mode = Mode.WALK if rng.uniform() < 0.6 else Mode.EBIKE
        b = RouteBuilder(rng, sc.start, *home).stay_until(leave)
        track = b.go(*there, mode, wiggle=0.01).stay_until(sc.end).track()
        sc.add(Person(f"S{n:02d}", track, [tag(rng, f"T{n:02d}", track)]))
    _no_contact(sc, "S01", "S02")
    _background(sc, rng, first=3)
    return sc


@recipe
def contact_drift(rng: np.random.Generator) -> Scenario:
    """Two neighbours under a no-contact order, 260–350 m apart, indoors all evening: drift
    excursions of 100–250 m, each towards the other's building, throw their fixes
    together. No alert."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 17), local_ms(day, 23))
    first = lishui.interior_point(rng, min_depth_m=3000, within_m=6000)
    bearing = _u(rng, 0, 360)
    homes = (first, _along(first, bearing, _u(rng, 260, 350)))
    rate = _u(rng, 0.5, 1.0)
    for n, home in enumerate(homes, 1):
        towards = (bearing + (0 if n == 1 else 180)) % 360
        gps = replace(TAG_GPS, excursions_per_h=rate, excursion_bearing=towards)
        track = RouteBuilder(rng, sc.start, *home).stay_until(sc.end).track()
        sc.add(Person(f"S{n:02d}", track, [tag(rng, f"T{n:02d}", track, gps)]))
    _no_contact(sc, "S01", "S02")
    _background(sc, rng, first=3)
    return sc


@recipe
def protected_approach(rng: np.random.Generator) -> Scenario:
    """A supervisee under a no-contact order hangs about a street corner for 40–80 min;
    the person the order protects, carrying a registered OwnTracks or Traccar Client
    phone, walks from 1.2–1.8 km away towards it: half come within 40–150 m of the supervisee
    and stay 10–20 min (a protected_proximity), half turn back 700–900 m short (none)."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 9), local_ms(day, 14))
    corner = lishui.interior_point(rng, min_depth_m=4000, within_m=6000)
    arrive = sc.start + int(_u(rng, 1, 1.5) * H)
    leave = arrive + int(_u(rng, 40, 80) * MIN)
    home = nearby(rng, *corner, 1000, 2500)
    b = RouteBuilder(rng, sc.start, *home).stay_until(arrive - 40 * MIN)
    b.go(*corner, Mode.WALK).linger(max(0, leave - b.now) / 1000, 15).go(*home, Mode.WALK)
    track = b.stay_until(sc.end).track()
    sc.add(Person("S01", track, [tag(rng, "T01", track)]))
    comes = rng.uniform() < 0.5
    start = nearby(rng, *corner, 1200, 1800)
    bearing = math.degrees(math.atan2(start[1] - corner[1], start[0] - corner[0]))
    stop = nearby(rng, *corner, 40, 150) if comes else _along(corner, bearing, _u(rng, 700, 900))
    v = RouteBuilder(rng, sc.start, *start).stay_until(arrive + int(_u(rng, 5, 10) * MIN))
    v.go(*stop, Mode.WALK, wiggle=0.01).linger(minutes(10, 20, rng), 10).go(*start, Mode.WALK)
    bearer = v.stay_until(sc.end).track()
    device = (phone if rng.uniform() < 0.5 else traccar_phone)(rng, "V01", bearer)
    entry: dict[str, Any] = {"id": "PP-01", "supervisee": "S01", "distance_m": 500}
    entry["device"] = {"id": device.id, "kind": "phone"} | (
        {"osmand": device.osmand} if device.osmand else {"owntracks": device.owntracks}
    )
    sc.protected.append((entry, device))
    _background(sc, rng)
    return sc


@recipe
def gathering_market(rng: np.random.Generator) -> Scenario:
    """Three or four supervisees meet at a market and stay together 30–70 minutes: one
    gathering. Others go about their day elsewhere."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 13))
    market = lishui.interior_point(rng, min_depth_m=4000, within_m=6000)
    arrive = sc.start + int(_u(rng, 1.5, 2) * H)
    leave = arrive + int(_u(rng, 30, 70) * MIN)
    size = int(rng.integers(3, 5))
    for n in range(1, size + 1):
        _meet(rng, sc, n, market, arrive, leave, _u(rng, 10, 20))
    sc.gathering = {}
    _background(sc, rng, first=size + 1)
    return sc


# -- a phone not with its owner (人机分离) ------------------------------------------------------

SEPARATED = frozenset({"device_separation"})


def _left_behind(track: Track, home: tuple[float, float], start: int, end: int) -> Track:
    """`track` with the device left at `home` from `start` to `end` (the person is home at
    both): the phone stays where its owner put it down."""
    before, after = track.t < start, track.t > end
    t = np.concatenate((track.t[before], [start, end], track.t[after]))
    lat = np.concatenate((track.lat[before], [home[0]] * 2, track.lat[after]))
    lon = np.concatenate((track.lon[before], [home[1]] * 2, track.lon[after]))
    env = np.concatenate((track.env[before], [int(Env.INDOOR)] * 2, track.env[after]))
    return Track(t.astype(np.int64), lat, lon, env.astype(np.int8))


@recipe
def phone_left_home(rng: np.random.Generator) -> Scenario:
    """Wears the tag and carries the phone — but one morning leaves the phone at home and
    drives or rides 3–8 km across 莲都, staying 1–3 hours (back, or not yet); or hands it
    to a relative who does, while the person stays in. Apart for hours: device_separation."""
    day = _day(rng)
    start = local_ms(day, _u(rng, 7, 12))
    sc = Scenario(start, start + 8 * H)
    home = lishui.interior_point(rng, min_depth_m=2000, within_m=6000)
    dest = lishui.interior_point(rng, min_depth_m=1500, near=home, within_m=8000)
    if distance_m(*home, *dest) < 3000:
        raise UnintendedError("the trip is too short")
    mode = Mode.DRIVE if rng.uniform() < 0.6 else Mode.EBIKE
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 120, rng), Env.INDOOR)
    left = b.now
    b.go(*dest, mode).stay(minutes(60, 180, rng), Env.INDOOR)
    back = rng.uniform() < 0.6
    if back:
        b.go(*home, mode)
    trip = b.stay_until(sc.end, Env.INDOOR).track()
    at_home = _left_behind(trip, home, left, sc.end if not back else b.now)
    if rng.uniform() < 0.7:  # the phone stays home
        track, tag_track, phone_track = trip, trip, at_home
    else:  # a relative goes out with the phone
        track, tag_track, phone_track = at_home, at_home, trip
    devices = [tag(rng, "T01", tag_track), phone(rng, "P01", phone_track)]
    # Asked once before the phone is left (answered) and once while apart: the phone
    # answers where it is, but its owner is not there to pass the face verification.
    before = left - int(_u(rng, 15, 25) * MIN)
    apart = left + int(_u(rng, 30, 50) * MIN)
    checks = _checkins_at(before, apart) if before > sc.start + 5 * MIN else _checkins_at(apart)
    sc.add(Person("S01", track, devices, expect=SEPARATED | CHECKED, checkins=checks))
    _background(sc, rng)
    return sc


@recipe
def phone_carried(rng: np.random.Generator) -> Scenario:
    """Wears the tag and carries the phone all day: errands on foot and by e-bike, a drive
    across 莲都 and back. Now and then the phone is left at home for a 10–25 min walk to a
    shop 300–800 m away (apart, but not long or far enough to matter). Nothing to report."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 21))
    home = lishui.interior_point(rng, min_depth_m=2000, within_m=6000)
    far = lishui.interior_point(rng, min_depth_m=1500, near=home, within_m=8000)
    b = RouteBuilder(rng, sc.start, *home).stay(minutes(30, 90, rng), Env.INDOOR)
    errand(b, rng, home).stay(minutes(30, 90, rng), Env.INDOOR)
    b.go(*far, Mode.DRIVE).stay(minutes(40, 120, rng), Env.INDOOR).go(*home, Mode.DRIVE)
    b.stay(minutes(20, 60, rng), Env.INDOOR)
    short = rng.uniform() < 0.6
    left = b.now
    if short:
        shop = nearby(rng, *home, 300, 800)
        b.go(*shop, Mode.WALK).stay(minutes(5, 12, rng), Env.INDOOR).go(*home, Mode.WALK)
    came_back = b.now
    track = routine(b, rng, home, sc.end).track()
    phone_track = _left_behind(track, home, left, came_back) if short else track
    devices = [tag(rng, "T01", track), phone(rng, "P01", phone_track)]
    # Asked three times, whenever it falls: with the phone at hand, each is answered.
    checks = _checkins_at(*(int(t) for t in rng.uniform(sc.start + H, sc.end - H, 3)))
    sc.add(Person("S01", track, devices, expect=QUIET, checkins=checks))
    _background(sc, rng)
    return sc


# -- co-workers (聚集 at work is none; after the older kinds: a kind's seeds follow its place)


@recipe
def gathering_workplace(rng: np.random.Generator) -> Scenario:
    """Three co-workers, each with the building site as their roster workplace (a place
    150 m round), work side by side outdoors from about 8:00 (within 100 m of each other:
    a gathering anywhere else): at work, none. At lunch half of them walk together to a
    market 1.2–2 km away and stay 35–60 minutes: one gathering; the other half stay at
    work all day."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 15))
    site = lishui.interior_point(rng, min_depth_m=4000, within_m=6000)
    place = {"lat": site[0], "lon": site[1], "radius_m": 150, "name": "建筑工地"}
    market = nearby(rng, *site, 1200, 2000)
    lunch = sc.start + int(_u(rng, 4.3, 4.6) * H)
    goes = rng.uniform() < 0.5
    stay = _u(rng, 35, 60) * 60
    for n in (1, 2, 3):
        home = nearby(rng, *site, 1000, 2500)
        bench = nearby(rng, *site, 5, 25)
        b = RouteBuilder(rng, sc.start, *home).stay_until(sc.start + int(_u(rng, 20, 50) * MIN))
        b.go(*bench, Mode.WALK if rng.uniform() < 0.5 else Mode.EBIKE)
        b.linger(max(0, lunch + int(_u(rng, 0, 3) * MIN) - b.now) / 1000, 15)
        if goes:
            b.go(*market, Mode.WALK).linger(stay, _u(rng, 10, 20)).go(*bench, Mode.WALK)
        b.linger(max(0, sc.end - b.now) / 1000, 15)
        track = b.stay_until(sc.end).track()
        sc.add(
            Person(f"S{n:02d}", track, [tag(rng, f"T{n:02d}", track)], profile={"workplace": place})
        )
    sc.gathering = {}
    _background(sc, rng, first=4)
    return sc


# -- check-ins (定位签到) -----------------------------------------------------------------------

CHECKED = frozenset({"checkin_missed"})
# Three a day at set times and two at random, each with the app's face verification.
ROUTINE_CHECKINS = Schedule(times=("09:00", "13:00", "19:00"), random_per_day=2, face=True)


@recipe
def checkin_kept(rng: np.random.Generator) -> Scenario:
    """Supervised by phone alone, asked three times a day and twice at random with a face
    verification, 15 minutes each; answers every one, some at once, some 5–10 minutes
    late. Nothing to report."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 22))
    home = lishui.interior_point(rng, min_depth_m=1500, within_m=6000)
    track = routine(RouteBuilder(rng, sc.start, *home), rng, home, sc.end).track()
    delay = _u(rng, 0, 600)
    devices = [phone(rng, "P01", track, answer_delay_s=delay)]
    sc.add(Person("S01", track, devices, expect=QUIET, checkins=ROUTINE_CHECKINS))
    _background(sc, rng)
    return sc


@recipe
def checkin_missed(rng: np.random.Generator) -> Scenario:
    """Supervised by phone alone, asked as in checkin_kept, and misses: either answers every
    request 17–30 minutes late (after the deadline), or answers most but kills the app over
    the 13:00 one (the phone still reports; no verification comes) and goes silent for
    30–45 minutes over the 19:00 one. Each miss is a checkin_missed."""
    day = _day(rng)
    sc = Scenario(local_ms(day, 7), local_ms(day, 22))
    home = lishui.interior_point(rng, min_depth_m=1500, within_m=6000)
    track = routine(RouteBuilder(rng, sc.start, *home), rng, home, sc.end).track()
    if rng.uniform() < 0.4:
        kw: dict[str, Any] = {"answer_delay_s": _u(rng, 17 * 60, 30 * 60)}
    else:
        noon, evening = local_ms(day, 13), local_ms(day, 19)
        quiet = evening - int(_u(rng, 5, 15) * MIN)
        kw = {
            "answer_delay_s": _u(rng, 0, 300),
            "ignores": ((noon - 10 * MIN, noon + 30 * MIN),),
            "silent": ((quiet, quiet + int(_u(rng, 30, 45) * MIN)),),
        }
    devices = [phone(rng, "P01", track, **kw)]
    sc.add(Person("S01", track, devices, expect=CHECKED, checkins=ROUTINE_CHECKINS))
    _background(sc, rng)
    return sc


def _checkins_at(*instants: int) -> Schedule:
    return Schedule(times=minutes_of(*instants), face=True)


# -- writing the suite -----------------------------------------------------------------------

ATTEMPTS = 12


def build(
    kind: str, seed: int, index: int, out: Path, pursuit: bool = False
) -> tuple[int, int, int]:
    """Write scenario `index` of `kind`, with devices that obey pursuit if asked (Scenario.
    render); (pings, truth events, attempts)."""
    kind_no = list(RECIPES).index(kind)
    for attempt in range(ATTEMPTS):
        rng = np.random.default_rng((seed, kind_no, index, attempt))
        try:
            rendered = RECIPES[kind](rng).render(int(rng.integers(2**31)), pursuit)
        except (UnintendedError, RuntimeError):
            continue
        write(out, rendered)
        return len(rendered.pings), len(rendered.truth), attempt + 1
    raise RuntimeError(f"{kind} #{index}: no draw did what the recipe meant in {ATTEMPTS} tries")


def _job(args: tuple[str, int, int, Path, bool]) -> tuple[str, int, int, int]:
    kind, seed, index, out, pursuit = args
    return (out.name, *build(kind, seed, index, out, pursuit))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.suite", description=__doc__)
    parser.add_argument("out", type=Path, metavar="OUT_DIR")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-kind", type=int, default=12, help="scenarios per kind (12)")
    parser.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--pursuit",
        action="store_true",
        help="devices obey the service's pursuit commands (15 s reports while in breach)",
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k] or list(RECIPES)
    unknown = set(kinds) - set(RECIPES)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(RECIPES)}")
    jobs = [
        (k, args.seed, i, args.out / f"{k}-{i:02d}", args.pursuit)
        for k in kinds
        for i in range(args.per_kind)
    ]
    began = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(_job, jobs, chunksize=4))
    pings = sum(d[1] for d in done)
    events = sum(d[2] for d in done)
    print(
        f"{len(done)} scenarios, {pings} pings, {events} truth events in {args.out} "
        f"({time.monotonic() - began:.1f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
