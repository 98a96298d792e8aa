"""Sane ranges for what reaches the engine from outside — zones and policy thresholds — and
the rule that a heightened period may only make the policy stricter.

Everything the engine judges with comes through here first: the API, `fencewatch load` and
`fencewatch replay` refuse what is out of range with the reason, and the rules loaded from
the database leave such a row out. A value in range is one the engine can compute with
(finite, positive where it divides or scales) and one a monitoring centre could mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import msgspec
import shapely

from geofence.policy import DEFAULT_BOOK, Policy, PolicyBook

# Zones. A circle zone (prohibition order around a victim's home, a curfew home) is metres
# to a few kilometres; 100 km is generous. Jurisdictions are counties and cities: 15° of
# extent covers the largest prefecture, and the engine's local metric frame assumes no
# more. Detailed county boundaries run to tens of thousands of vertices.
MIN_RADIUS_M = 1.0
MAX_RADIUS_M = 100_000.0
MAX_EXTENT_DEG = 15.0
MAX_VERTICES = 100_000
MAX_SCHEDULE_WINDOWS = 50

# Position sources a device may name (spec 4.1 `src`): the keys of per-source policy tables.
SOURCES = ("gps", "bds", "wifi", "cell", "mixed")

LOWER, HIGHER = "lower", "higher"


class Bound(NamedTuple):
    low: float
    high: float
    # Which way tightens the rules (breaches confirmed sooner, faults reported sooner, fewer
    # fixes dismissed); None where neither way does, so a heightened period keeps it.
    stricter: str | None


_DAY = 86_400
POLICY_BOUNDS: dict[str, Bound] = {
    "confirm_fixes": Bound(1, 20, LOWER),
    "confirm_s": Bound(0, 3600, LOWER),
    "confirm_evidence": Bound(1, 100, LOWER),
    "evidence_cap": Bound(1, 20, HIGHER),
    "confirm_fast_s": Bound(0, 3600, LOWER),
    "confirm_dwell_s": Bound(0, _DAY, LOWER),
    "reopen_s": Bound(0, _DAY, LOWER),
    "clear_fixes": Bound(1, 20, HIGHER),
    "trust_acc_m": Bound(1, 100_000, LOWER),
    "trust_max_m": Bound(1, 100_000, LOWER),
    "acc_unknown_m": Bound(1, 100_000, LOWER),
    "acc_factor_default": Bound(1, 10, LOWER),
    "acc_floor_m": Bound(0, 100_000, LOWER),
    "acc_factor": Bound(1, 10, LOWER),
    "acc_max_m": Bound(1, 100_000, HIGHER),
    "coarse_acc_m": Bound(1, 100_000, HIGHER),
    "max_speed_mps": Bound(1, 1000, HIGHER),
    "jump_recover_s": Bound(0, _DAY, LOWER),
    "still_mps": Bound(0, 10, LOWER),
    "moving_mps": Bound(0, 10, LOWER),
    "drift_m": Bound(1, 10_000, HIGHER),
    "rest_tau_s": Bound(1, _DAY, None),
    "rest_gap_s": Bound(1, _DAY, None),
    "drift_max_s": Bound(0, _DAY, LOWER),
    "late_after_s": Bound(1, _DAY, None),
    "offline_s": Bound(60, 7 * _DAY, LOWER),
    "power_off_grace_s": Bound(0, _DAY, LOWER),
    "connection_lost_grace_s": Bound(0, _DAY, LOWER),
    "no_fix_s": Bound(60, 7 * _DAY, LOWER),
    "low_battery_pct": Bound(0, 100, HIGHER),
    "battery_clear_pct": Bound(0, 100, HIGHER),
    "leave_travel_s": Bound(0, 30 * _DAY, LOWER),
    "trip_speed_mps": Bound(0.5, 100, HIGHER),
    "trip_detour": Bound(1, 10, LOWER),
    "trip_margin_s": Bound(0, _DAY, LOWER),
    "leave_dwell_s": Bound(0, _DAY, LOWER),
    "stop_radius_m": Bound(1, 10_000, None),
    "pursuit_interval_s": Bound(1, 3600, LOWER),
    "separation_s": Bound(60, _DAY, LOWER),
    "separation_gap_s": Bound(60, _DAY, HIGHER),
    "separation_m": Bound(0, 10_000, LOWER),
    "separation_pair_s": Bound(1, 3600, None),
    "separation_speed_mps": Bound(0, 100, LOWER),
}


# -- zones ----------------------------------------------------------------------------------


def circle_radius(value: Any) -> float:
    """A circle zone's radius in metres, or ValueError with the reason."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("a Point zone needs a positive radius in metres")
    if not (math.isfinite(value) and MIN_RADIUS_M <= value <= MAX_RADIUS_M):
        raise ValueError(
            f"radius must be {MIN_RADIUS_M:g} to {MAX_RADIUS_M:g} metres, got {value!r}"
        )
    return float(value)


def geometry_problem(geom: shapely.Geometry) -> str | None:
    """Why a zone's geometry (lon/lat degrees) cannot be judged against, or None. Cheap:
    it runs before any geometry work on what a request brought."""
    vertices = int(shapely.get_num_coordinates(geom))
    if vertices > MAX_VERTICES:
        return f"{vertices} vertices, limit {MAX_VERTICES} (simplify the boundary)"
    west, south, east, north = (float(b) for b in shapely.bounds(geom))
    if not all(map(math.isfinite, (west, south, east, north))):
        return "coordinates must be finite numbers"
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        return "coordinates out of range (are they lon, lat?)"
    if east - west > MAX_EXTENT_DEG or north - south > MAX_EXTENT_DEG:
        return f"the zone spans more than {MAX_EXTENT_DEG:g}° (a county or city is far smaller)"
    return None


# -- policies -------------------------------------------------------------------------------


def _values(field: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(label, number) for a scalar field, or for each source of a per-source table."""
    if isinstance(value, dict):
        for src, number in value.items():
            yield f"{field}.{src}", number
    else:
        yield field, value


def _range_problems(field: str, value: Any) -> list[str]:
    bound = POLICY_BOUNDS.get(field)
    if bound is None:
        return [f"{field} has no sane range defined and cannot be set"]
    if isinstance(value, dict) and not set(value) <= set(SOURCES):
        unknown = sorted(set(value) - set(SOURCES))
        return [f"{field}: unknown sources {unknown} (known: {', '.join(SOURCES)})"]
    return [
        f"{label} must be {bound.low:g} to {bound.high:g}, got {number!r}"
        for label, number in _values(field, value)
        if not (math.isfinite(number) and bound.low <= number <= bound.high)
    ]


def policy_problems(policy: Policy) -> list[str]:
    """Why a whole policy (a level's base, or a base with overrides) is out of range."""
    problems = [
        problem
        for field in Policy.__struct_fields__
        for problem in _range_problems(field, getattr(policy, field))
    ]
    if policy.battery_clear_pct < policy.low_battery_pct:
        problems.append("battery_clear_pct must not be below low_battery_pct")
    return problems


def _effective(policy: Policy, field: str, src: str | None) -> float:
    """The value `field` takes for fixes from `src` (per-source tables fall back as
    geofence.judge.error_radius reads them)."""
    value = getattr(policy, field)
    if src is None:
        return float(value)
    fallback = policy.acc_factor_default if field == "acc_factor" else 0.0
    return float(value.get(src, fallback))


def _bases(book: PolicyBook) -> Iterator[tuple[str, Policy]]:
    levels = {"default": book.default, **book.by_level}
    for level, base in levels.items():
        yield f"{level} tags", base
        for kind, overrides in book.by_kind.items():
            yield f"{level} {kind}s", msgspec.structs.replace(base, **overrides)


def _relaxes(bound: Bound, value: float, base: float) -> bool:
    return value > base if bound.stricter == LOWER else value < base


def heightened_problems(overrides: Any, book: PolicyBook = DEFAULT_BOOK) -> list[str]:
    """Why a heightened period's policy overrides cannot be used: unknown fields, wrong
    types, values out of range, or a value that would relax the base policy of any
    supervision level or device kind — a heightened period only ever tightens the rules."""
    if not isinstance(overrides, Mapping):
        return ["policy must be an object of policy fields"]
    unknown = sorted(set(overrides) - set(Policy.__struct_fields__))
    if unknown:
        return [f"unknown policy fields {unknown}"]
    try:
        typed = msgspec.structs.asdict(msgspec.convert(dict(overrides), Policy))
    except msgspec.ValidationError as exc:
        return [str(exc)]
    problems = [p for field in overrides for p in _range_problems(field, typed[field])]
    if problems:
        return problems
    changes = {field: typed[field] for field in overrides}
    bases = list(_bases(book))
    for who, base in bases:
        effective = msgspec.structs.replace(base, **changes)
        if effective.battery_clear_pct < effective.low_battery_pct:
            problems.append(f"battery_clear_pct would fall below low_battery_pct for {who}")
            break
    for field, value in changes.items():
        bound = POLICY_BOUNDS[field]
        if bound.stricter is None:
            problems.append(
                f"{field} cannot be set by a heightened period: neither a higher nor a lower"
                " value makes the rules stricter"
            )
            continue
        relaxed = _first_relaxed(field, value, bound, bases)
        if relaxed is not None:
            problems.append(
                f"{relaxed}: a heightened period may only tighten the rules"
                f" ({bound.stricter} {field} is stricter)"
            )
    return problems


def _first_relaxed(
    field: str, value: Any, bound: Bound, bases: list[tuple[str, Policy]]
) -> str | None:
    """What `value` would relax, for the first base it relaxes; None if it relaxes none."""
    for who, base in bases:
        effective = msgspec.structs.replace(base, **{field: value})
        sources: list[str | None] = [None]
        if isinstance(value, dict):
            sources = sorted(set(getattr(base, field)) | set(value) | set(SOURCES))
        for src in sources:
            now, was = _effective(effective, field, src), _effective(base, field, src)
            if _relaxes(bound, now, was):
                label = field if src is None else f"{field}.{src}"
                return f"{label} {now:g} would relax the rules for {who} ({was:g})"
    return None
