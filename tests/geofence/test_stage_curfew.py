"""geofence.stages.curfew: while the home zone's schedule is in force, wholly outside it is
a breach; outside the schedule a fix counts as on the right side, so the breach ends when
the curfew does."""

from __future__ import annotations

from typing import Any

import pytest

from geofence.judge import Judged
from geofence.model import Quality
from geofence.stages import curfew
from tests.geofence.engine_kit import Lane, judged, ms


def away(t: float, depth: float = 1.0, **kw: Any) -> Judged:
    """Wholly outside the home zone while the curfew is in force."""
    return judged(t, home=-2, home_depth=depth, **kw)


def home(t: float, **kw: Any) -> Judged:
    return judged(t, home=2, **kw)


def no_curfew(t: float, **kw: Any) -> Judged:
    """Out of the curfew's hours, or a person with no home zone: judge says nothing."""
    return judged(t, **kw)


AWAY = [away(0), away(30), away(60)]  # raised at 60 s

CASES = [
    pytest.param(AWAY, ["", "", "raise"], id="away during curfew: three fixes, a minute"),
    pytest.param([away(0, 3), away(20, 3)], ["", "raise"], id="far from home: two fixes"),
    pytest.param(
        [judged(t, home=-1) for t in (0, 30, 60, 90)], [""] * 4, id="circles touching home"
    ),
    pytest.param([no_curfew(t) for t in (0, 30, 60)], [""] * 3, id="curfew not in force"),
    pytest.param(
        [away(0), away(30, flags=Quality.JUMP), away(45, flags=Quality.DRIFT), away(60)],
        [""] * 4,
        id="jumps and drift are not believed",
    ),
    pytest.param(
        [*AWAY, home(90), home(120)], ["", "", "raise", "", "clear"], id="home again: cleared"
    ),
    pytest.param(
        [*AWAY, no_curfew(90), no_curfew(120)],
        ["", "", "raise", "clear", ""],
        id="the curfew ends: the breach ends",
    ),
    pytest.param(
        [*AWAY, no_curfew(90, radius=3000), no_curfew(120, radius=3000)],
        ["", "", "raise", "clear", ""],
        id="the curfew ends, coarse fixes after it: the breach ends",
    ),
    pytest.param(
        [*AWAY, home(90), home(120), away(150), away(180), away(210)],
        ["", "", "raise", "", "clear", "", "", "reopen"],
        id="out again within five minutes: reopened",
    ),
]


@pytest.mark.parametrize(("fixes", "expected"), CASES)
def test_away_from_home_during_curfew(fixes: list[Judged], expected: list[str]) -> None:
    assert Lane(curfew.run).actions(fixes) == expected


def test_the_alert_says_where_and_since_when() -> None:
    [raised] = Lane(curfew.run).feed(*AWAY)
    assert raised.type == "curfew_breach"
    assert raised.detail["start"] == ms(0)
    assert set(raised.detail) >= {"lat", "lon", "acc"}
