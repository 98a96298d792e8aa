"""geofence.judge: each fix's error circle and its classes against the zones that apply to
it — the allowed area (jurisdiction plus an active leave's destinations), the exclusion
zones in force, the home zone while the curfew is in force — as the rule stages get them."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from shapely.geometry import mapping

from geofence.judge import Judged, error_radius, judge
from geofence.model import DeviceRef, Fix, Leave, Quality, Roster, Supervisee, Window, ZoneDef
from geofence.policy import Policy
from geofence.ruleset import RuleSet
from tests.geofence.engine_kit import (
    EVERY_DAY,
    POLICY,
    circle_zone,
    fix,
    ms,
    square_zone,
)
from tests.kit import LIANDU, LIANDU_SEAT, QINGTIAN, border_crossing, county, qingtian_point

HOUR = 3600
NIGHTLY = (Window(EVERY_DAY, 22 * 60, 6 * 60),)  # 22:00–06:00; T0 is 18:40 local
THURSDAY_EVENING = (Window((4,), 18 * 60, 20 * 60),)
ZONES = [
    square_zone("J", "jurisdiction", 2000),  # the person's county: 2 km either side
    square_zone("D", "jurisdiction", 2000, east=20_000),  # a leave's destination, 16 km off
    square_zone("FAR", "jurisdiction", 2000, east=200_000),
    square_zone("X", "exclusion", 200, north=1000),
    circle_zone("XC", "exclusion", 300, east=-1000),
    square_zone("XN", "exclusion", 200, north=-1000, schedule=NIGHTLY),
    square_zone("H", "home", 100, schedule=NIGHTLY),
    square_zone("HA", "home", 100),  # a home zone with no schedule: always in force
    *(ZoneDef(c, "jurisdiction", mapping(county(c))) for c in (LIANDU, QINGTIAN)),
]


def judged(f: Fix, **person: Any) -> Judged:
    person.setdefault("jurisdiction", ("J",))
    supervisee = Supervisee(id="S1", devices=(DeviceRef("T1"),), **person)
    [j] = judge(RuleSet(Roster(supervisees=[supervisee]), ZONES), [f])
    return j


@pytest.mark.parametrize(
    ("src", "acc", "radius", "flags"),
    [
        pytest.param("gps", 8.0, 16.0, 0, id="gps: twice the reported acc"),
        pytest.param(None, 8.0, 16.0, 0, id="no source: the default factor"),
        pytest.param("wifi", 10.0, 60.0, 0, id="wifi: 30 m floor"),
        pytest.param("wifi", 50.0, 100.0, 0, id="wifi above its floor"),
        pytest.param("cell", 200.0, 3000.0, 0, id="cell: a tower's guess"),
        pytest.param(None, None, 600.0, Quality.ACC_UNKNOWN, id="no acc: treated as poor"),
        pytest.param("cell", None, 3000.0, Quality.ACC_UNKNOWN, id="cell, no acc"),
        pytest.param("gps", 2500.0, 5000.0, 0, id="gps, at acc_max_m"),
        pytest.param("gps", 3000.0, 6000.0, Quality.ACC_POOR, id="gps beyond acc_max_m"),
        pytest.param("cell", 3000.0, 6000.0, Quality.ACC_POOR, id="cell beyond acc_max_m"),
    ],
)
def test_error_radius(src: str | None, acc: float | None, radius: float, flags: int) -> None:
    assert error_radius(fix(0, src=src, acc=acc), POLICY) == (radius, flags)


def test_error_radius_follows_the_policy() -> None:
    policy = Policy(acc_factor_default=3.0, acc_unknown_m=100.0)
    assert error_radius(fix(0, acc=None), policy) == (300.0, Quality.ACC_UNKNOWN)


def test_a_report_without_position_is_judged_against_nothing() -> None:
    j = judged(fix(0, position=False), exclusion=("X",), home="HA")
    assert j.flags & Quality.NO_FIX
    assert (j.allowed, j.exclusion, j.home) == (0, (), 0)


def test_a_fix_too_coarse_to_place_is_flagged_and_judged_against_nothing() -> None:
    # Inside an exclusion zone and away from home, but a 6 km circle says nothing of either.
    j = judged(fix(4 * HOUR, north=1000, acc=3000), exclusion=("X",), home="H")
    assert j.flags & Quality.ACC_POOR
    assert (j.allowed, j.exclusion, j.home) == (0, (), 0)


@pytest.mark.parametrize(
    ("delay_s", "late"),
    [
        pytest.param(1, False, id="live"),
        pytest.param(299, False, id="just within late_after_s"),
        pytest.param(301, True, id="buffered upload"),
    ],
)
def test_a_fix_that_reached_us_long_after_is_late(delay_s: float, late: bool) -> None:
    j = judged(fix(0, delay_s=delay_s))
    assert j.late is late
    assert bool(j.flags & Quality.LATE) is late


def test_a_fix_converted_from_gcj02_says_so() -> None:
    assert judged(fix(0, gcj02=True)).flags & Quality.GCJ02


@pytest.mark.parametrize(
    ("east", "acc", "allowed", "depth"),
    [
        pytest.param(0, 8, 2, 1.0, id="at home in the county"),
        pytest.param(1990, 10, 1, 1.0, id="10 m inside, r 20: leaning in"),
        pytest.param(2010, 10, -1, 1.0, id="10 m outside, r 20: leaning out"),
        pytest.param(2100, 10, -2, 5.0, id="100 m outside, r 20: five radii beyond"),
        pytest.param(2300, 50, -2, 3.0, id="300 m outside, r 100: three radii beyond"),
    ],
)
def test_class_and_depth_against_the_jurisdiction(
    east: float, acc: float, allowed: int, depth: float
) -> None:
    j = judged(fix(0, east=east, acc=acc))
    assert j.radius == 2 * acc
    assert (j.allowed, j.depth) == (allowed, pytest.approx(depth, rel=1e-3))


def test_a_circle_across_two_allowed_districts_is_inside_their_union() -> None:
    lat, lon = border_crossing(LIANDU_SEAT, qingtian_point(), LIANDU)
    straddling = msgspec.structs.replace(fix(0, acc=50), lat=lat, lon=lon)
    assert judged(straddling, jurisdiction=(LIANDU,)).allowed in (1, -1)
    assert judged(straddling, jurisdiction=(LIANDU, QINGTIAN)).allowed == 2


TRIP_D = 16_000 * 1.5 / 12 + 1800  # 16 km gap, ×1.5 detour, at 12 m/s, + 30 min margin


@pytest.mark.parametrize(
    ("leave", "t_s", "east", "allowed", "on_leave", "after_leave", "trip_s"),
    [
        pytest.param(
            Leave(ms(-HOUR), ms(HOUR), ("D",), "L1"),
            0,
            20_000,
            2,
            "L1",
            None,
            TRIP_D,
            id="at the destination during the leave",
        ),
        pytest.param(
            Leave(ms(-HOUR), ms(HOUR), ("D",), "L1"),
            0,
            10_000,
            -2,
            "L1",
            None,
            TRIP_D,
            id="on the road during the leave",
        ),
        pytest.param(
            Leave(ms(-HOUR), ms(HOUR), ("D",), "L1"),
            0,
            0,
            2,
            "L1",
            None,
            TRIP_D,
            id="at home during the leave",
        ),
        pytest.param(
            Leave(ms(-HOUR), ms(HOUR), ("FAR",), "L1"),
            0,
            200_000,
            2,
            "L1",
            None,
            3 * HOUR,
            id="a far destination: the trip at most leave_travel_s",
        ),
        pytest.param(
            Leave(ms(-2 * HOUR), ms(-HOUR), ("D",), "L1"),
            0,
            20_000,
            -2,
            None,
            "L1",
            0,
            id="at the destination after the leave ended",
        ),
        pytest.param(
            Leave(ms(-HOUR), ms(HOUR), ("D",), "L1", returned_at=ms(-60)),
            0,
            20_000,
            -2,
            None,
            None,
            0,
            id="after reporting back (销假)",
        ),
        pytest.param(
            Leave(ms(-30 * 24 * HOUR), ms(30 * 24 * HOUR), ("D",), "P1", schedule=THURSDAY_EVENING),
            0,
            20_000,
            2,
            "P1",
            None,
            TRIP_D,
            id="a recurring permit, in its hours",
        ),
        pytest.param(
            Leave(ms(-30 * 24 * HOUR), ms(30 * 24 * HOUR), ("D",), "P1", schedule=THURSDAY_EVENING),
            4 * HOUR,
            20_000,
            -2,
            None,
            None,
            0,
            id="a recurring permit, out of its hours",
        ),
    ],
)
def test_leave_destinations_join_the_allowed_area_while_it_runs(
    leave: Leave,
    t_s: float,
    east: float,
    allowed: int,
    on_leave: str | None,
    after_leave: str | None,
    trip_s: float,
) -> None:
    j = judged(fix(t_s, east=east), leaves=(leave,))
    assert (j.allowed, j.leave, j.after_leave) == (allowed, on_leave, after_leave)
    assert j.trip_s == pytest.approx(trip_s, abs=2)


@pytest.mark.parametrize(
    ("t_s", "north", "east", "acc", "exclusion"),
    [
        pytest.param(0, 0, 0, 8, {}, id="far from every zone: none listed"),
        pytest.param(0, 1000, 0, 8, {"X": (2, 200 / 16)}, id="inside a square zone"),
        pytest.param(0, 795, 0, 10, {"X": (-1, 1.0)}, id="5 m short of it, r 20: listed"),
        pytest.param(0, 805, 0, 10, {"X": (1, 1.0)}, id="5 m into it, r 20: leaning in"),
        pytest.param(0, 0, -1000, 8, {"XC": (2, 300 / 16)}, id="inside a circle zone"),
        pytest.param(0, -1000, 0, 8, {}, id="a night zone by day: not in force"),
        pytest.param(4 * HOUR, -1000, 0, 8, {"XN": (2, 200 / 16)}, id="a night zone by night"),
    ],
)
def test_exclusion_zones_listed_unless_surely_outside_or_out_of_force(
    t_s: float, north: float, east: float, acc: float, exclusion: dict[str, tuple[int, float]]
) -> None:
    j = judged(fix(t_s, north=north, east=east, acc=acc), exclusion=("X", "XC", "XN"))
    found = {zone: (cls, depth) for zone, cls, depth in j.exclusion}
    assert found == {
        zone: (cls, pytest.approx(depth, rel=1e-3)) for zone, (cls, depth) in exclusion.items()
    }


@pytest.mark.parametrize(
    ("home", "t_s", "north", "expected", "home_depth"),
    [
        pytest.param("H", 0, 0, 0, 1.0, id="18:40 at home: curfew not in force"),
        pytest.param("H", 0, 500, 0, 1.0, id="18:40 away: curfew not in force"),
        pytest.param("H", 4 * HOUR, 0, 2, 1.0, id="22:40 at home"),
        pytest.param("H", 4 * HOUR, 500, -2, 400 / 16, id="22:40 away"),
        pytest.param("H", 7.5 * HOUR, 500, -2, 400 / 16, id="02:10 away: across midnight"),
        pytest.param("H", 12 * HOUR, 500, 0, 1.0, id="06:40 away: curfew over"),
        pytest.param("HA", 0, 500, -2, 400 / 16, id="no schedule: always in force"),
    ],
)
def test_home_is_judged_only_while_the_curfew_is_in_force(
    home: str, t_s: float, north: float, expected: int, home_depth: float
) -> None:
    j = judged(fix(t_s, north=north), home=home)
    assert (j.home, j.home_depth) == (expected, pytest.approx(home_depth, rel=1e-3))
