"""geofence.stages.pursuit: while a position rule is pending or in breach on the live
track, the device is asked to report every `pursuit_interval_s` — once, not per fix — and
relaxed when none is. Fed behind the position stages, as the pipeline runs it."""

from __future__ import annotations

from typing import Any

import pytest

from geofence.judge import Judged
from geofence.policy import Policy
from geofence.stages import curfew, exclusion, jurisdiction, pursuit
from tests.geofence.engine_kit import Lane, judged


def out(t: float, **kw: Any) -> Judged:
    return judged(t, allowed=-2, **kw)


def inside(t: float) -> Judged:
    return judged(t, allowed=2)


def lane(late: bool = False) -> Lane:
    return Lane(jurisdiction.run, exclusion.run, curfew.run, pursuit.run, late=late)


def commands(lane: Lane, fixes: list[Judged]) -> list[str]:
    return ["+".join(v.action for v in lane.feed(j) if v.type == "pursuit") for j in fixes]


@pytest.mark.parametrize(
    ("fixes", "expected"),
    [
        pytest.param([inside(0), inside(30)], ["", ""], id="all well: never asked"),
        pytest.param([out(0)], ["pursue"], id="the first fix outside: at once"),
        pytest.param(
            [out(0), out(30), out(60), out(90)],
            ["pursue", "", "", ""],
            id="pending, then a breach: asked once",
        ),
        pytest.param(
            [out(0), out(30), out(60), inside(90), inside(120)],
            ["pursue", "", "", "", "relax"],
            id="cleared: relaxed",
        ),
        pytest.param([out(0), inside(30)], ["pursue", "relax"], id="a streak broken off"),
        pytest.param([judged(0, allowed=-1)], [""], id="a circle touching the border"),
        pytest.param(
            [judged(0, allowed=2, exclusion=(("X", 2, 1.0),)), inside(30)],
            ["pursue", "relax"],
            id="an exclusion zone entered, then left",
        ),
        pytest.param(
            [judged(0, allowed=2, home=-2), judged(30, allowed=2, home=2)],
            ["pursue", "relax"],
            id="away from home in curfew, then home",
        ),
    ],
)
def test_the_device_is_pursued_while_a_breach_is_pending_or_open(
    fixes: list[Judged], expected: list[str]
) -> None:
    assert commands(lane(), fixes) == expected


def test_the_past_is_not_pursued() -> None:
    late = lane(late=True)
    assert commands(late, [out(0), out(30), out(60)]) == ["", "", ""]
    assert [v.action for v in late.verdicts] == ["raise"]


@pytest.mark.parametrize("interval_s", [15, 5])
def test_the_interval_is_the_policys(interval_s: int) -> None:
    policy = Policy(pursuit_interval_s=interval_s)
    [pursue] = lane().feed(out(0, policy=policy))
    assert (pursue.action, pursue.detail) == ("pursue", {"interval_s": interval_s})
    assert pursue.key == f"pursuit:{pursue.device}"
