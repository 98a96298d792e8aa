"""geofence.stages.drift: a device whose Doppler speed says it is still, yet whose fix lies
far from where it has been resting, is drifting indoors, not walking: flagged DRIFT."""

from __future__ import annotations

import pytest

from geofence.judge import Judged
from geofence.model import Quality
from geofence.stages import drift
from tests.geofence.engine_kit import Lane, judged


def still(t: float, east: float, acc: float = 8.0) -> Judged:
    return judged(t, east=east, fix_fields={"acc": acc, "spd": 0.0})


def moving(t: float, east: float) -> Judged:
    return judged(t, east=east, fix_fields={"spd": 1.5})


def unknown_speed(t: float, east: float) -> Judged:
    return judged(t, east=east)


def lane(reports_speed: bool = True) -> Lane:
    found = Lane(drift.run)
    # What the jump stage learns from a device's first non-zero speed: its zeros mean still.
    found.track.speed_seen = reports_speed
    return found


def flags(fixes: list[Judged], reports_speed: bool = True) -> str:
    lane(reports_speed).feed(*fixes)
    return "".join("D" if j.flags & Quality.DRIFT else "." for j in fixes)


LONG_OFFSET = [still(0, 0), *(still(t, 300) for t in range(60, 1560, 60))]


@pytest.mark.parametrize(
    ("fixes", "expected"),
    [
        pytest.param([still(0, 0), still(60, 10), still(120, -10)], "...", id="resting"),
        pytest.param([still(0, 0), still(60, 300), still(120, 0)], ".D.", id="still, 300 m off"),
        pytest.param([still(0, 0), moving(60, 300)], "..", id="moving 300 m off: a walk"),
        pytest.param([still(0, 0), unknown_speed(60, 300)], "..", id="no speed: cannot tell"),
        pytest.param([still(0, 0), still(60, 80)], "..", id="within drift_m"),
        pytest.param([still(0, 0), still(60, 150, acc=200)], "..", id="within its own acc"),
        pytest.param([still(0, 0), still(700, 300)], "..", id="after a gap: rests anew"),
        pytest.param(
            [still(0, 0), moving(60, 300), still(120, 350)], "...", id="walked, then rests there"
        ),
        pytest.param(
            LONG_OFFSET,
            "." + "D" * 20 + "." * 5,
            id="an offset lasting drift_max_s is where it now is",
        ),
    ],
)
def test_a_still_device_far_from_its_rest_is_drifting(fixes: list[Judged], expected: str) -> None:
    assert flags(fixes) == expected


def test_a_device_that_never_reported_motion_is_never_judged_by_it() -> None:
    assert flags([still(0, 0), still(60, 300)], reports_speed=False) == ".."


def test_a_jump_is_left_to_the_jump_filter() -> None:
    spike = judged(60, east=300, flags=Quality.JUMP, fix_fields={"spd": 0.0})
    assert flags([still(0, 0), spike, still(120, 300)]) == "..D"
