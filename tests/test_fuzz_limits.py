"""Property-based fuzzing (hypothesis) of what geofence.limits lets through: zones and
heightened periods at the edges of their ranges, and any fix the decoder passes, are
judged by the engine without raising — the validation, not the quarantine, is what keeps
the engine running (issue 13). Sized for CI (seconds); FENCEWATCH_FUZZ_EXAMPLES raises it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fencewatch.scenario import parse_heightened, parse_supervisee
from geofence.engine import Engine
from geofence.limits import (
    HIGHER,
    MAX_RADIUS_M,
    MIN_RADIUS_M,
    POLICY_BOUNDS,
    SOURCES,
    _bases,
    _effective,
)
from geofence.model import Fix, Roster
from geofence.policy import DEFAULT_BOOK
from geofence.ruleset import RuleSet
from geofence.zones import ZoneError, parse_feature, parse_feature_collection
from ingest.decode import decode
from tests.kit import LIANDU, LIANDU_SEAT, T0, lishui_collection

EXAMPLES = int(os.environ.get("FENCEWATCH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LISHUI = parse_feature_collection(lishui_collection())
BASES = [base for _, base in _bases(DEFAULT_BOOK)]
PERSON = {"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]}

near = st.floats(-0.2, 0.2)


@st.composite
def zones(draw: st.DrawFn, zone_id: str, kind: str) -> Any:
    """A circle or a polygon near the city seat, anywhere in the accepted ranges."""
    lat, lon = LIANDU_SEAT[0] + draw(near), LIANDU_SEAT[1] + draw(near)
    if draw(st.booleans()):
        radius = draw(st.floats(MIN_RADIUS_M, MAX_RADIUS_M))
        geometry = {"type": "Point", "coordinates": [lon, lat]}
        props = {"id": zone_id, "kind": kind, "radius": radius}
    else:
        ring = draw(st.lists(st.tuples(near, near), min_size=3, max_size=8))
        coords = [[lon + dx, lat + dy] for dx, dy in ring]
        geometry = {"type": "Polygon", "coordinates": [[*coords, coords[0]]]}
        props = {"id": zone_id, "kind": kind}
    try:
        return parse_feature({"type": "Feature", "properties": props, "geometry": geometry})
    except ZoneError:
        return None  # refused (no area left after repair): nothing reaches the engine


def _stricter(field: str, src: str | None = None) -> st.SearchStrategy[float]:
    """Values of `field` in range and no laxer than any base: what a period may set."""
    bound = POLICY_BOUNDS[field]
    bases = [_effective(base, field, src) for base in BASES]
    if bound.stricter == HIGHER:
        return st.floats(max(bases), bound.high)
    return st.floats(bound.low, min(bases))


@st.composite
def periods(draw: st.DrawFn) -> dict[str, Any]:
    fields = [f for f, b in POLICY_BOUNDS.items() if b.stricter and f in BASES[0].__struct_fields__]
    chosen = draw(st.lists(st.sampled_from(fields), max_size=6, unique=True))
    policy: dict[str, Any] = {}
    for field in chosen:
        if field in ("acc_floor_m", "acc_factor"):
            # A table replaces the base's whole: every source the bases name must stay.
            policy[field] = {src: draw(_stricter(field, src)) for src in SOURCES}
        else:
            value = draw(_stricter(field))
            is_int = isinstance(getattr(BASES[0], field), int)
            policy[field] = int(value) if is_int else value
    if "low_battery_pct" in policy:  # the alert must clear above where it is raised
        floor = max(policy["low_battery_pct"], *(b.battery_clear_pct for b in BASES))
        policy["battery_clear_pct"] = max(policy.get("battery_clear_pct", 0), floor)
    return {"from": "2025-11-27T00:00:00Z", "to": "2025-11-28T00:00:00Z", "policy": policy}


fix_entries = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "seq": st.integers(0, 2**40),
        "ts": st.integers(T0 - 3_600_000, T0),
        "lat": st.floats(28.0, 29.0),
        "lon": st.floats(119.5, 120.5),
    },
    optional={
        "acc": st.floats(0, 100_000),
        "src": st.sampled_from([*SOURCES, "other"]),
        "spd": st.floats(0, 1000),
        "hdg": st.floats(0, 360),
        "batt": st.integers(0, 100),
        "chg": st.booleans(),
        "strap": st.sampled_from(["ok", "open", "cut"]),
        "fix": st.booleans(),
        "crs": st.sampled_from(["wgs84", "gcj02"]),
    },
)


@FUZZ
@given(
    exclusion=zones("X", "exclusion"),
    home=zones("H", "home"),
    destination=zones("D", "jurisdiction"),
    period=periods(),
    batches=st.lists(st.lists(fix_entries, min_size=1, max_size=5), min_size=1, max_size=6),
)
def test_what_the_limits_accept_the_engine_judges(
    exclusion: Any, home: Any, destination: Any, period: dict[str, Any], batches: list[Any]
) -> None:
    extra = [z for z in (exclusion, home, destination) if z is not None]
    person: dict[str, Any] = dict(PERSON)
    if exclusion is not None:
        person["exclusion"] = ["X"]
    if home is not None:
        person["home"] = "H"
    if destination is not None:
        person["leaves"] = [
            {"from": "2025-11-27T00:00:00Z", "to": "2025-11-28T00:00:00Z", "destinations": ["D"]}
        ]
    roster = Roster(supervisees=[parse_supervisee(person)], heightened=parse_heightened([period]))
    engine = Engine(RuleSet(roster, [*LISHUI, *extra]))
    owners, at = {"T1": "S1"}, T0 + 1000
    for batch in batches:
        payload = json.dumps(
            {"v": 1, "batch": [{k: v for k, v in f.items() if k != "v"} for f in batch]}
        )
        fixes: list[Fix] = decode("em/T1/loc", payload.encode(), at, owners, {}).fixes
        engine.process(fixes)  # raises on failure: the test fails
        engine.tick(at + 3_600_000)
        at += 60_000
    assert msgspec.msgpack.encode(engine.state)


def test_a_leap_in_sequence_numbers_costs_nothing() -> None:
    """Found by the test above: a device jumping from seq 1 to 2**40 (a number the decoder
    accepts) once made the engine build a 2**40-bit integer, and the process ran out of
    memory — again after each restart, as the broker redelivered the message."""
    engine = Engine(RuleSet(Roster(supervisees=[parse_supervisee(PERSON)]), LISHUI))
    lat, lon = LIANDU_SEAT
    for seq, ts in ((1, T0), (1 << 40, T0 + 1000), (1 << 40, T0 + 1000)):
        engine.process([Fix("T1", seq, ts, ts + 500, lat, lon, acc=5.0)])
    assert engine.state.devices["T1"].live.seen == 1
