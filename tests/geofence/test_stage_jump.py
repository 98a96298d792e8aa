"""geofence.stages.jump: a fix that would need an impossible speed from the last trusted
one is flagged JUMP and not believed, unless the next fix agrees with it; with Doppler
speeds from a device known to report them, "impossible" is what those speeds allow."""

from __future__ import annotations

import pytest

from geofence.judge import Judged
from geofence.model import Quality
from geofence.stages import jump
from tests.geofence.engine_kit import Lane, judged


def at(t: float, east: float, acc: float = 8.0, spd: float | None = None, **kw: object) -> Judged:
    fields = {"acc": acc, "spd": spd, **kw}
    return judged(t, east=east, fix_fields=fields)


def poor(t: float, east: float) -> Judged:
    """A fix too coarse to place (judge flags it ACC_POOR)."""
    return judged(t, east=east, flags=Quality.ACC_POOR, fix_fields={"acc": 3000})


@pytest.mark.parametrize(
    ("fixes", "jumps"),
    [
        pytest.param([at(0, 0), at(30, 40), at(60, 80)], "...", id="walking"),
        pytest.param([at(0, 0), at(30, 5000), at(60, 40)], ".J.", id="a multipath spike"),
        pytest.param(
            [at(0, 0), at(30, 5000), at(60, 5040)], ".J.", id="a real move, confirmed by the next"
        ),
        pytest.param([at(0, 0), at(30, 5000), at(60, -8000)], ".JJ", id="two spikes that disagree"),
        pytest.param([at(0, 0), at(3600, 30_000)], "..", id="far after a long gap: plausible"),
        pytest.param([at(0, 0), at(30, 700)], "..", id="700 m in 30 s with no speeds: a car"),
        pytest.param(
            [at(0, 0, src="cell", acc=1000), at(30, 5000)], "..", id="a cell fix's wide circle"
        ),
        pytest.param([at(0, 0), at(0, 500)], ".J", id="500 m in the same second"),
        pytest.param(
            [at(0, 0, spd=1.2), at(30, 700, spd=1.2)], ".J", id="Doppler says walking, 700 m off"
        ),
        pytest.param([at(0, 0, spd=20.0), at(30, 700, spd=20.0)], "..", id="Doppler says driving"),
        pytest.param(
            [at(0, 0, spd=0.0), at(30, 700, spd=0.0)],
            "..",
            id="a device that never reports motion: its zero says nothing",
        ),
        pytest.param(
            [at(0, 0), poor(30, 5000), at(40, 5040)],
            "..J",
            id="a fix too coarse to place moves nothing",
        ),
    ],
)
def test_impossible_moves_are_flagged(fixes: list[Judged], jumps: str) -> None:
    Lane(jump.run).feed(*fixes)
    assert "".join("J" if j.flags & Quality.JUMP else "." for j in fixes) == jumps


def test_a_reflection_right_after_a_rejected_one_is_measured_through_its_speed() -> None:
    """Seed 23's false exit: a still tag (Doppler 0), a reflection 430 m off (rejected), then
    another 500 m the other way with a walking reading. Measured straight from the last
    trusted fix two minutes back, the walking reading allowed 550 m; through the rejected
    fix's own reading of 0 it allows under 400, and the reflection stays a reflection."""
    fixes = [
        at(0, 0, spd=1.5),  # the device has shown it reports motion
        at(60, 0, spd=0.0),
        at(120, -430, acc=11.4, spd=0.0),
        at(181, 500, acc=10.4, spd=1.7),
    ]
    Lane(jump.run).feed(*fixes)
    assert "".join("J" if j.flags & Quality.JUMP else "." for j in fixes) == "..JJ"


def test_a_real_ride_past_a_rejected_reflection_is_believed() -> None:
    """Readings that say riding allow the distance the ride covered, rejected fix or not."""
    fixes = [
        at(0, 0, spd=6.0),
        at(60, 360, spd=6.0),
        at(120, 3000, spd=6.0),  # a reflection
        at(180, 1080, spd=6.0),
    ]
    Lane(jump.run).feed(*fixes)
    assert "".join("J" if j.flags & Quality.JUMP else "." for j in fixes) == "..J."
