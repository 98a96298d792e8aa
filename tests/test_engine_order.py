"""One breach, one alert, in any arrival order: QoS 1 redeliveries and buffered uploads
shuffle a device's messages, and the engine must come to the same alerts as when they
arrive in order (property test over permutations with duplicates, batches included)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence.engine import Engine
from geofence.model import Fix, Quality, Verdict
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from tests.kit import (
    LIANDU,
    LIANDU_SEAT,
    border_crossing,
    fix,
    line,
    lishui_collection,
    offset,
    qingtian_point,
    roster,
    square_m,
)

ZONES = parse_feature_collection(lishui_collection())


def excursion() -> list[dict[str, Any]]:
    """Every 30 s: 12 fixes walking to the 莲都/青田 border and 28 beyond it, walking on and
    then turning back (the live tail, in order, finds the person home again)."""
    target = qingtian_point()
    border = border_crossing(LIANDU_SEAT, target, LIANDU)
    inside = line(LIANDU_SEAT, border, 12)
    out = line(border, target, 400, t0=inside[-1]["ts"] + 30_000, seq0=13)[:16]
    back = [dict(f) for f in reversed(out)][:12]
    for i, f in enumerate(back):
        f["seq"] = 29 + i
        f["ts"] = out[-1]["ts"] + (i + 1) * 30_000
    return inside + out + back


STREAM = excursion()
TAIL = line(LIANDU_SEAT, LIANDU_SEAT, 4, t0=STREAM[-1]["ts"] + 30_000, seq0=41)


class Alerts:
    """The alerts an officer ends up with: one per key, with where each breach began."""

    def __init__(self) -> None:
        self.start: dict[str, int] = {}
        self.type: dict[str, str] = {}
        self.active: dict[str, bool] = {}

    def apply(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            if v.action == "raise":
                self.start[v.key], self.type[v.key] = v.detail["start"], v.type
                self.active[v.key] = True
            elif v.action == "extend":
                self.start[v.key] = min(self.start[v.key], v.detail["start"])
            elif v.action in ("clear", "reopen"):
                self.active[v.key] = v.action == "reopen"

    def summary(self) -> list[tuple[str, int, bool]]:
        return sorted((self.type[k], self.start[k], self.active[k]) for k in self.start)


def deliver(messages: list[list[dict[str, Any]]]) -> list[tuple[str, int, bool]]:
    """Feed messages in this order, one a second, then the device's live tail in order."""
    engine = Engine(RuleSet(roster(), ZONES))
    alerts = Alerts()
    at = STREAM[-1]["ts"]
    for message in [*messages, *([f] for f in TAIL)]:
        at += 1000
        fixes: list[Fix] = [fix(f, at=at) for f in message]
        alerts.apply(engine.tick(at))
        alerts.apply(engine.process(fixes).verdicts)
    return alerts.summary()


IN_ORDER = deliver([[f] for f in STREAM])


def test_the_ordered_excursion_is_one_cleared_alert_from_the_first_fix_outside() -> None:
    assert len(IN_ORDER) == 1
    kind, start, active = IN_ORDER[0]
    assert kind == "jurisdiction_exit"
    assert start == STREAM[13]["ts"]  # the first fix wholly beyond the border (12 is on it)
    assert active is False


@st.composite
def shuffled(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """The stream cut into batches, some delivered twice, in any order."""
    cuts = sorted(draw(st.sets(st.integers(1, len(STREAM) - 1), max_size=12)))
    bounds = [0, *cuts, len(STREAM)]
    messages = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    again = draw(st.lists(st.sampled_from(messages), max_size=len(messages)))
    return draw(st.permutations(messages + again))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled())
def test_any_order_with_duplicates_gives_the_same_alert(
    messages: list[list[dict[str, Any]]],
) -> None:
    assert deliver(messages) == IN_ORDER


def _late_batch_after_live(
    zones: list[dict[str, Any]], person: dict[str, Any], late: list[tuple[float, float]]
) -> list[Verdict]:
    """Live fixes at the seat (inside everything but the test zone), then a buffered batch
    from before them at the places `late`, 30 s apart: what the officer is told."""
    rules = RuleSet(roster(**person), [*ZONES, *parse_feature_collection(_collection(zones))])
    engine = Engine(rules)
    t0 = STREAM[0]["ts"]
    live = line(LIANDU_SEAT, LIANDU_SEAT, 4, t0=t0 + 600_000, seq0=100)
    verdicts = [v for f in live for v in engine.process([fix(f)]).verdicts]
    batch = [
        fix({"seq": i, "ts": t0 + i * 30_000, "lat": lat, "lon": lon, "acc": 8.0}, at=t0 + 800_000)
        for i, (lat, lon) in enumerate(late)
    ]
    return verdicts + engine.process(batch).verdicts


def _collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def test_a_breach_found_late_ends_where_the_live_track_already_shows_the_person_back() -> None:
    """Exit, exclusion zone and curfew alike: the batch raises its breach (late), and the
    live fixes that came before it already show the person back, so it is not left open."""
    outside = [(f["lat"], f["lon"]) for f in STREAM[14:18]]
    school = offset(LIANDU_SEAT, 0, 2000)
    cases = [
        ([], {}, outside, "jurisdiction_exit"),
        (
            [square_m("school", "exclusion", school, 150)],
            {"exclusion": ["school"]},
            [school] * 4,
            "exclusion_enter",
        ),
        (
            [square_m("home", "home", LIANDU_SEAT, 150)],
            {"home": "home"},
            [school] * 4,
            "curfew_breach",
        ),
    ]
    for zones, person, late, kind in cases:
        verdicts = [v for v in _late_batch_after_live(zones, person, late) if v.type == kind]
        assert [(v.action, v.late) for v in verdicts] == [("raise", True), ("clear", False)], kind


def test_several_fixes_in_one_millisecond_are_judged_as_they_come() -> None:
    """A device may stamp a batch's fixes with one time: a higher number in the same
    millisecond is newer, not an out-of-order fix (which would cost a late track rebuild)."""
    engine = Engine(RuleSet(roster(), ZONES))
    t0 = STREAM[0]["ts"]
    batch = [
        fix({"seq": seq, "ts": t0, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1], "acc": 8.0})
        for seq in range(1, 11)
    ]
    judged = engine.process(batch).judged
    assert [j.flags & Quality.OUT_OF_ORDER for j in judged] == [0] * 10
    again = engine.process(batch[3:5]).judged
    assert all(j.flags & Quality.DUPLICATE for j in again)
