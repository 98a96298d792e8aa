"""geofence.stages.jurisdiction: leaving the allowed area (jurisdiction, plus an approved
leave's destinations) — and, on leave, being off the road between them."""

from __future__ import annotations

from typing import Any

import pytest

from geofence.judge import Judged
from geofence.model import Quality
from geofence.stages import jurisdiction
from tests.geofence.engine_kit import Lane, judged, ms

TRIP_S = 3600  # how long the trip between the jurisdiction and the destination may take


def out(t: float, **kw: Any) -> Judged:
    """Wholly outside the allowed area."""
    return judged(t, allowed=-2, **kw)


def inside(t: float, **kw: Any) -> Judged:
    return judged(t, allowed=2, **kw)


def leaning_out(t: float) -> Judged:
    return judged(t, allowed=-1)


CASES = [
    pytest.param(
        [out(0), out(30), out(60)], ["", "", "raise"], id="three fixes outside over a minute"
    ),
    pytest.param(
        [out(0, depth=3), out(20, depth=3)], ["", "raise"], id="a clear exit: two fixes, 20 s"
    ),
    pytest.param(
        [leaning_out(0), leaning_out(30), leaning_out(60), leaning_out(90)],
        ["", "", "", ""],
        id="circles still touching the area never raise",
    ),
    pytest.param(
        [out(0), out(30, flags=Quality.JUMP), out(45, flags=Quality.DRIFT), out(60), out(90)],
        ["", "", "", "", "raise"],
        id="jumps and drift are not believed",
    ),
    pytest.param(
        [judged(0), judged(30), judged(60)], ["", "", ""], id="no jurisdiction: nothing judged"
    ),
    pytest.param(
        [out(0), out(30), out(60), inside(90), inside(120)],
        ["", "", "raise", "", "clear"],
        id="back inside: cleared after two fixes",
    ),
    pytest.param(
        [out(0), out(30), out(60), inside(90), out(120), out(150), out(180), inside(210)],
        ["", "", "raise", "", "", "", "", ""],
        id="along the border: one alert",
    ),
    pytest.param(
        [out(0), out(30), out(60), inside(90), inside(120), out(150), out(180), out(210)],
        ["", "", "raise", "", "clear", "", "", "reopen"],
        id="out again within five minutes: reopened",
    ),
    pytest.param(
        [out(0), out(30), out(60), inside(90), inside(120), out(500), out(530), out(560)],
        ["", "", "raise", "", "clear", "", "", "raise"],
        id="out again later: a new alert",
    ),
]


@pytest.mark.parametrize(("fixes", "expected"), CASES)
def test_leaving_the_jurisdiction(fixes: list[Judged], expected: list[str]) -> None:
    assert Lane(jurisdiction.run).actions(fixes) == expected


def test_the_alert_says_where_and_since_when() -> None:
    [raised] = Lane(jurisdiction.run).feed(out(0), out(30), out(60, late=True))
    assert raised.type == "jurisdiction_exit"
    assert raised.late is True
    assert raised.detail["start"] == ms(0)
    assert set(raised.detail) >= {"lat", "lon", "acc"}


def leg(
    t_from: float,
    t_to: float,
    east_from: float,
    *,
    speed: float = 12.0,
    wander: float = 0.0,
    acc: float = 8.0,
    leave: str | None = "L1",
) -> list[Judged]:
    """On leave, wholly outside every allowed place: a fix a minute, moving east at `speed`
    m/s, every other fix `wander` metres off to the north."""
    fixes = []
    for i, t in enumerate(range(int(t_from), int(t_to), 60)):
        north = wander if i % 2 else 0.0
        east = east_from + speed * (t - t_from)
        fixes.append(
            out(
                t,
                east=east,
                north=north,
                depth=5.0,
                leave=leave,
                trip_s=TRIP_S,
                fix_fields={"acc": acc},
            )
        )
    return fixes


AT_DESTINATION = inside(2400, east=30_000, leave="L1", trip_s=TRIP_S)


@pytest.mark.parametrize(
    ("fixes", "raised"),
    [
        pytest.param(leg(0, 3000, 0), [], id="on the road within the trip: tolerated"),
        pytest.param(
            [*leg(0, 600, 0), *leg(600, 1800, 7200, speed=0)],
            [(1560, "stopped_outside_destinations", 600)],
            id="stopped over 15 min on the way: from when the stop began",
        ),
        pytest.param(
            [*leg(0, 600, 0), *leg(600, 1200, 7200, speed=0), *leg(1200, 2400, 7200)],
            [],
            id="a ten-minute fuel stop is still travel",
        ),
        pytest.param(
            leg(0, 1200, 5000, speed=0, wander=150),
            [(960, "stopped_outside_destinations", 0)],
            id="drift around a stop is no movement",
        ),
        pytest.param(
            leg(0, 1200, 5000, speed=0, wander=400, acc=150),
            [(960, "stopped_outside_destinations", 0)],
            id="coarse fixes cannot fake movement",
        ),
        pytest.param(
            leg(0, 4200, 0),
            [(3660, "trip_overlong", TRIP_S)],
            id="longer on the road than the trip takes",
        ),
        pytest.param(
            [*leg(0, 2400, 0), AT_DESTINATION, *leg(2460, 4800, 30_000)],
            [],
            id="reaching an allowed place restarts the trip",
        ),
        pytest.param(
            leg(0, 300, 0, leave=None),
            [(60, None, 0)],
            id="no leave in force: an exit like any other",
        ),
    ],
)
def test_on_leave_outside_every_allowed_place_only_while_travelling(
    fixes: list[Judged], raised: list[tuple[float, str | None, float]]
) -> None:
    verdicts = Lane(jurisdiction.run).feed(*fixes)
    assert [v.action for v in verdicts] == ["raise"] * len(raised)
    assert [(v.ts, v.detail.get("cause"), v.detail["start"]) for v in verdicts] == [
        (ms(t), cause, ms(start)) for t, cause, start in raised
    ]


def test_a_breach_on_leave_names_the_leave_and_ends_at_the_destination() -> None:
    lane = Lane(jurisdiction.run)
    [raised] = lane.feed(*leg(0, 1200, 5000, speed=0))
    assert raised.detail["leave"] == "L1"
    arrived = [inside(t, east=30_000, leave="L1", trip_s=TRIP_S) for t in (1260, 1320)]
    assert lane.actions(arrived) == ["", "clear"]


def test_still_away_after_the_leave_ended_names_it() -> None:
    fixes = [out(t, depth=5, after_leave="L1") for t in (0, 60)]
    [raised] = Lane(jurisdiction.run).feed(*fixes)
    assert raised.detail["after_leave"] == "L1"


def test_a_late_tracks_streak_just_before_the_alert_is_where_it_began() -> None:
    live = Lane(jurisdiction.run)
    late = Lane(jurisdiction.run, state=live.state, late=True)
    assert live.actions([out(600), out(630), out(660)]) == ["", "", "raise"]
    [extended] = late.feed(out(400), out(430))
    assert (extended.action, extended.detail["start"]) == ("extend", ms(400))
    assert extended.key == live.verdicts[0].key  # the same alert, not a second one
