"""geofence.limits (issue 13): what may reach the engine — zones and policy thresholds in
sane, finite ranges — and heightened periods that can only tighten the rules. The API,
`fencewatch load` and `fencewatch replay` all parse through these checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fencewatch.loader import _read
from fencewatch.scenario import ScenarioError, parse_heightened
from geofence.limits import MAX_VERTICES, POLICY_BOUNDS, heightened_problems, policy_problems
from geofence.policy import DEFAULT_BOOK, Policy
from geofence.zones import ZoneError, parse_feature
from tests.kit import LIANDU_SEAT, square


def _circle(radius: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"id": "X", "kind": "exclusion", "radius": radius},
        "geometry": {"type": "Point", "coordinates": [LIANDU_SEAT[1], LIANDU_SEAT[0]]},
    }


@pytest.mark.parametrize("radius", [1e308, float("inf"), float("nan"), 0, -5, 0.5, 2e5, True])
def test_circle_zones_need_a_sane_radius(radius: Any) -> None:
    with pytest.raises(ZoneError, match="radius"):
        parse_feature(_circle(radius))
    assert parse_feature(_circle(300)).radius_m == 300.0


def test_zones_with_too_many_vertices_or_too_wide_are_refused() -> None:
    ring = [[119.9 + 0.01 * i / MAX_VERTICES, 28.4 + (i % 2) * 1e-4] for i in range(MAX_VERTICES)]
    huge = {
        "type": "Feature",
        "properties": {"id": "J", "kind": "jurisdiction"},
        "geometry": {"type": "Polygon", "coordinates": [[*ring, [119.9, 28.41], ring[0]]]},
    }
    with pytest.raises(ZoneError, match="vertices, limit"):
        parse_feature(huge)
    with pytest.raises(ZoneError, match="spans more than"):
        parse_feature(square("W", "jurisdiction", 100.0, 30.0, 10.0))
    with pytest.raises(ZoneError, match="windows, limit"):
        feature = square("H", "home", 119.9, 28.4, 0.01)
        feature["properties"]["schedule"] = [{"days": [1], "from": "22:00", "to": "06:00"}] * 51
        parse_feature(feature)


def test_the_shipped_policies_are_in_range_and_every_field_has_a_range() -> None:
    assert set(Policy.__struct_fields__) <= set(POLICY_BOUNDS)
    assert policy_problems(DEFAULT_BOOK.default) == []
    for policy in DEFAULT_BOOK.by_level.values():
        assert policy_problems(policy) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"confirm_fixes": 1_000_000}, "confirm_fixes must be 1 to 20"),
        ({"acc_max_m": float("inf")}, "acc_max_m must be 1 to 100000, got inf"),
        ({"acc_max_m": 1e308}, "acc_max_m must be"),
        ({"offline_s": 700}, "offline_s 700 would relax the rules for strict tags (600)"),
        ({"confirm_fixes": 4}, "lower confirm_fixes is stricter"),
        ({"acc_max_m": 2000.0}, "higher acc_max_m is stricter"),
        ({"acc_floor_m": {"cell": 3000}}, "acc_floor_m.cell 3000 would relax"),
        ({"acc_factor": {"moon": 1.0}}, "unknown sources ['moon']"),
        ({"late_after_s": 60}, "neither a higher nor a lower"),
        ({"battery_clear_pct": 10}, "battery_clear_pct would fall below low_battery_pct"),
        ({"confirm_fixes": True}, "Expected `int`, got `bool`"),
        ({"sirens": True}, "unknown policy fields ['sirens']"),
        ([1, 2], "policy must be an object"),
    ],
)
def test_heightened_periods_may_only_tighten_within_range(overrides: Any, reason: str) -> None:
    problems = heightened_problems(overrides)
    assert any(reason in p for p in problems), problems


def test_heightened_periods_that_tighten_are_accepted() -> None:
    tighter = {
        "confirm_fixes": 2,
        "confirm_s": 30,
        "offline_s": 300,
        "acc_max_m": 8000.0,
        "low_battery_pct": 25,
        "battery_clear_pct": 35,
        "acc_floor_m": {"cell": 1000.0, "wifi": 30.0},
    }
    assert heightened_problems(tighter) == []


def test_rosters_and_zone_files_are_checked_on_load_and_replay(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="acc_max_m must be"):
        period = {"from": "2026-02-01T00:00:00Z", "to": "2026-02-02T00:00:00Z"}
        parse_heightened([{**period, "policy": {"acc_max_m": 1e309}}])
    zones = {"type": "FeatureCollection", "features": [_circle(1e308)]}
    (tmp_path / "zones.geojson").write_text(json.dumps(zones))
    (tmp_path / "roster.json").write_text(json.dumps({"supervisees": []}))
    with pytest.raises(ScenarioError, match=r"zones\.geojson: feature 0: zone X: radius must be"):
        _read(tmp_path)
