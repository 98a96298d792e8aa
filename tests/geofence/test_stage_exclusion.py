"""geofence.stages.exclusion: inside a prohibition-order zone (禁止令) while it is in force
is a breach, one episode per zone; a zone judge left out (surely outside, or out of force)
counts as a fix on the right side."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from geofence.judge import Judged
from geofence.model import Quality
from geofence.stages import exclusion
from geofence.state import Track
from tests.geofence.engine_kit import Lane, judged, ms


def inside(t: float, zone: str = "X", cls: int = 2, depth: float = 1.0, **kw: Any) -> Judged:
    return judged(t, exclusion=((zone, cls, depth),), **kw)


def away(t: float, **kw: Any) -> Judged:
    """Surely outside every zone, or the zone is out of force: judge lists none."""
    return judged(t, **kw)


IN = [inside(0), inside(30), inside(60)]  # raised at 60 s

CASES = [
    pytest.param(IN, ["", "", "raise"], id="three fixes inside over a minute"),
    pytest.param(
        [inside(0, depth=3), inside(20, depth=3)], ["", "raise"], id="deep inside: two fixes"
    ),
    pytest.param([inside(t, cls=1) for t in (0, 30, 60, 90)], [""] * 4, id="circles leaning in"),
    pytest.param(
        [inside(t, cls=-1) for t in (0, 30, 60, 90)], [""] * 4, id="circles touching from outside"
    ),
    pytest.param(
        [inside(0), inside(30, flags=Quality.JUMP), inside(45, flags=Quality.DRIFT), inside(60)],
        ["", "", "", ""],
        id="jumps and drift are not believed",
    ),
    pytest.param(
        [*IN, away(90), away(120)],
        ["", "", "raise", "", "clear"],
        id="out of the zone or out of force: cleared after two fixes",
    ),
    pytest.param(
        [*IN, inside(90, cls=-1, radius=20), inside(120, cls=-1, radius=20)],
        ["", "", "raise", "", "clear"],
        id="standing just outside it clears",
    ),
    pytest.param(
        [*IN, away(90, radius=3000), away(120, radius=3000)],
        ["", "", "raise", "", ""],
        id="km-wide circles outside prove nothing",
    ),
    pytest.param(
        [inside(0), inside(30), away(45), inside(60), inside(90), inside(120)],
        ["", "", "", "", "", "raise"],
        id="a fix surely outside starts the count again",
    ),
    pytest.param(
        [*IN, away(90), away(120), inside(150), inside(180), inside(210)],
        ["", "", "raise", "", "clear", "", "", "reopen"],
        id="back in within five minutes: reopened",
    ),
]


@pytest.mark.parametrize(("fixes", "expected"), CASES)
def test_entering_an_exclusion_zone(fixes: list[Judged], expected: list[str]) -> None:
    assert Lane(exclusion.run).actions(fixes) == expected


def test_each_zone_is_its_own_alert() -> None:
    both = (("X", 2, 1.0), ("Y", 2, 1.0))
    lane = Lane(exclusion.run)
    assert lane.actions([judged(t, exclusion=both) for t in (0, 30, 60)]) == ["", "", "raise+raise"]
    assert sorted(v.detail["zone"] for v in lane.verdicts) == ["X", "Y"]
    assert len({v.key for v in lane.verdicts}) == 2
    # Leaving Y while still in X ends Y's episode only.
    only_x = [judged(t, exclusion=(("X", 2, 1.0),)) for t in (90, 120)]
    assert lane.actions(only_x) == ["", "clear"]
    assert lane.verdicts[-1].key == next(v.key for v in lane.verdicts if v.detail["zone"] == "Y")


def test_the_alert_names_the_zone_and_when_it_began() -> None:
    [raised] = Lane(exclusion.run).feed(*IN)
    assert raised.type == "exclusion_enter"
    assert (raised.detail["zone"], raised.detail["start"]) == ("X", ms(0))


def test_tracks_in_no_breach_share_one_empty_mapping_that_no_breach_writes_to() -> None:
    # A device costs no empty dict of its own (docs/benchmarks.md, "Worker memory, eighth
    # round"), and the snapshot reads and writes it as before: an empty map.
    calm, breaching = Lane(exclusion.run), Lane(exclusion.run)
    assert calm.track.exclusion is breaching.track.exclusion == {}
    breaching.feed(*IN)
    assert list(breaching.track.exclusion) == ["X"]
    assert calm.track.exclusion == {}
    blob = msgspec.msgpack.encode(calm.track)
    assert b"\xa9exclusion\x80" in blob
    back = msgspec.msgpack.decode(blob, type=Track)
    assert back.exclusion is calm.track.exclusion
    breaching.feed(away(90), away(120))  # cleared: back to the shared one
    assert breaching.track.exclusion is calm.track.exclusion == {}
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(breaching.track), type=Track) == back
