"""geofence.area: an error circle against an area is +2 wholly inside, +1 centre inside but
crossing, -1 centre outside but crossing, -2 wholly outside — in metres, whatever the size
of the circle, against a square, a circle zone and a real county."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from geofence.area import Area
from tests.geofence.engine_kit import CENTRE, point, square_zone
from tests.kit import LIANDU, LIANDU_SEAT, border_crossing, county, offset, qingtian_point

# A square 2 km across centred on CENTRE: its border is 1000 m north, south, east and west.
SQUARE = Area(shape(square_zone("Z", "exclusion", 1000.0).geometry))
CIRCLE = Area.circle(*CENTRE, 300.0)


def classify(area: Area, where: list[tuple[float, float]], radii: list[float]) -> list[int]:
    lat, lon = np.array(where).T
    return area.classify(lat, lon, np.array(radii, dtype=np.float64)).tolist()


# (metres east, metres north of CENTRE, error radius m, class against SQUARE)
SQUARE_ROWS = [
    pytest.param(0, 0, 50, 2, id="centre"),
    pytest.param(0, 900, 50, 2, id="100 m in, r 50"),
    pytest.param(0, 960, 50, 1, id="40 m in, r 50"),
    pytest.param(0, 1040, 50, -1, id="40 m out, r 50"),
    pytest.param(0, 1100, 50, -2, id="100 m out, r 50"),
    pytest.param(0, 985, 10, 2, id="15 m in, r 10"),
    pytest.param(0, 995, 10, 1, id="5 m in, r 10"),
    pytest.param(0, 1005, 10, -1, id="5 m out, r 10"),
    pytest.param(0, 1015, 10, -2, id="15 m out, r 10"),
    pytest.param(0, 600, 300, 2, id="400 m in, r 300"),
    pytest.param(0, 800, 300, 1, id="200 m in, r 300"),
    pytest.param(0, 1200, 300, -1, id="200 m out, r 300"),
    pytest.param(0, 1400, 300, -2, id="400 m out, r 300"),
    pytest.param(0, 0, 1200, 1, id="centre, circle wider than the zone"),
    pytest.param(0, 2100, 1200, -1, id="1100 m out, r 1200"),
    pytest.param(0, 2300, 1200, -2, id="1300 m out, r 1200"),
    pytest.param(0, 3900, 3000, -1, id="2900 m out, r 3000"),
    pytest.param(0, 4100, 3000, -2, id="3100 m out, r 3000"),
    pytest.param(0, 6900, 6000, -1, id="5900 m out, r 6000"),
    pytest.param(0, 7100, 6000, -2, id="6100 m out, r 6000"),
    pytest.param(1100, 0, 50, -2, id="east: square in metres"),
    pytest.param(-960, 0, 50, 1, id="west, 40 m in"),
    pytest.param(1050, 1050, 60, -2, id="beyond the corner, 71 m away, r 60"),
    pytest.param(1050, 1050, 80, -1, id="beyond the corner, 71 m away, r 80"),
]


@pytest.mark.parametrize(("east", "north", "radius", "expected"), SQUARE_ROWS)
def test_circles_against_a_square(east: float, north: float, radius: float, expected: int) -> None:
    assert classify(SQUARE, [point(east, north)], [radius]) == [expected]


def test_a_batch_is_classified_as_each_fix_alone() -> None:
    rows = [cast(tuple[float, float, float, int], p.values) for p in SQUARE_ROWS]
    where = [point(east, north) for east, north, _, _ in rows]
    assert classify(SQUARE, where, [r for _, _, r, _ in rows]) == [c for *_, c in rows]


@pytest.mark.parametrize(
    ("east", "north", "radius", "expected"),
    [
        pytest.param(0, 0, 50, 2, id="centre"),
        pytest.param(0, 240, 50, 2, id="60 m in, r 50"),
        pytest.param(0, 270, 50, 1, id="30 m in, r 50"),
        pytest.param(0, 330, 50, -1, id="30 m out, r 50"),
        pytest.param(0, 360, 50, -2, id="60 m out, r 50"),
        pytest.param(-270, 0, 20, 2, id="west, 30 m in, r 20"),
        pytest.param(330, 0, 20, -2, id="east, 30 m out, r 20"),
        pytest.param(150, 150, 50, 2, id="diagonal, 88 m in"),
        pytest.param(0, 0, 400, 1, id="centre, circle wider than the zone"),
    ],
)
def test_circles_against_a_circle_zone(
    east: float, north: float, radius: float, expected: int
) -> None:
    assert classify(CIRCLE, [point(east, north)], [radius]) == [expected]


@pytest.mark.parametrize("area", [SQUARE, CIRCLE], ids=["square", "circle"])
def test_the_quick_test_leaves_out_only_what_classify_says_is_surely_out(area: Area) -> None:
    """`surely_out` lets the judge skip a zone for a fix; it may only do so where the full
    classification would say -2 anyway, and it must do so for fixes far away."""
    rng = np.random.default_rng(7)
    east, north = rng.uniform(-4000, 4000, (2, 4000))
    radii = rng.choice([5.0, 30.0, 100.0, 800.0, 2500.0, 6000.0], 4000)
    where = [point(e, n) for e, n in zip(east, north, strict=True)]
    classes = classify(area, where, radii.tolist())
    quick = [area.surely_out(lat, lon, r) for (lat, lon), r in zip(where, radii, strict=True)]
    assert all(c == -2 for c, q in zip(classes, quick, strict=True) if q)
    assert sum(quick) > 1000  # most of the square of 8 km around it
    assert area.surely_out(*point(0, 3500), 30.0) and not area.surely_out(*point(0, 0), 30.0)


def _along(metres: float) -> tuple[float, float]:
    """A point on the straight line from the 莲都 seat into 青田, `metres` past where it
    leaves 莲都 (negative: before)."""
    seat, target = LIANDU_SEAT, qingtian_point()
    north = target[0] - seat[0]
    east = (target[1] - seat[1]) * math.cos(math.radians(seat[0]))
    length = math.hypot(north, east)
    crossing = border_crossing(seat, target, LIANDU)
    return offset(crossing, east / length * metres, north / length * metres)


@pytest.mark.parametrize(
    ("where", "inside"),
    [
        pytest.param(LIANDU_SEAT, True, id="the city seat"),
        pytest.param(_along(-2000), True, id="2 km before the border"),
        pytest.param(_along(-300), True, id="300 m before the border"),
        pytest.param(_along(300), False, id="300 m past the border"),
        pytest.param(_along(2000), False, id="2 km past the border"),
        pytest.param(qingtian_point(), False, id="in 青田"),
    ],
)
@pytest.mark.parametrize("share", [0.5, 0.99, 1.01, 2.0], ids=lambda s: f"radius {s}x distance")
def test_circles_against_a_county(where: tuple[float, float], inside: bool, share: float) -> None:
    """A real, ragged border: the class turns from ±2 to ±1 exactly where the circle
    reaches the border, on the side the centre is."""
    liandu = Area(county(LIANDU))
    signed = liandu.signed_distance(*where)
    assert (signed > 0) == inside
    sign = 1 if inside else -1
    expected = sign * (2 if share < 1 else 1)
    assert classify(liandu, [where], [abs(signed) * share]) == [expected]


@pytest.mark.parametrize(
    ("north", "radius", "depth"),
    [
        pytest.param(1300, 100, 3.0, id="300 m out, r 100: three radii"),
        pytest.param(1300, 10, 30.0, id="300 m out, r 10"),
        pytest.param(1300, 0.2, 300.0, id="a radius under 1 m counts as 1 m"),
        pytest.param(1100, 100, 1.0, id="circle just touching the border: one radius"),
        pytest.param(700, 100, 3.0, id="300 m inside, r 100"),
    ],
)
def test_depth_is_distance_from_the_border_in_radii(
    north: float, radius: float, depth: float
) -> None:
    lat, lon = point(0, north)
    found = SQUARE.depth(np.array([lat]), np.array([lon]), np.array([radius]))
    assert found.tolist() == pytest.approx([depth], rel=1e-3)


@pytest.mark.parametrize(
    ("east", "north", "metres"),
    [
        pytest.param(0, 0, 1000.0, id="centre"),
        pytest.param(0, 800, 200.0, id="200 m inside"),
        pytest.param(0, 1300, -300.0, id="300 m outside"),
        pytest.param(-1100, 0, -100.0, id="100 m west of it"),
        pytest.param(1050, 1050, -70.71, id="beyond the corner"),
    ],
)
def test_signed_distance_is_metres_positive_inside(
    east: float, north: float, metres: float
) -> None:
    assert SQUARE.signed_distance(*point(east, north)) == pytest.approx(metres, abs=0.5)


def test_to_metric_puts_other_geometry_in_the_areas_metres() -> None:
    lat, lon = point(2000, -500)
    x, y = shapely.get_coordinates(SQUARE.to_metric(shapely.Point(lon, lat)))[0]
    assert (x, y) == (pytest.approx(2000, abs=1), pytest.approx(-500, abs=1))
    assert SQUARE.metric.area == pytest.approx(4e6, rel=1e-3)
    # What a leave's trip is measured by: the gap between two places, in metres.
    away = shape(square_zone("D", "jurisdiction", 1000.0, east=8000).geometry)
    assert SQUARE.metric.distance(SQUARE.to_metric(away)) == pytest.approx(6000, abs=5)
