"""Judge a batch of fixes against every zone that applies to each, in one vectorized pass
per zone (not one geometry call per fix): the hot path's geometry.

The result, a `Judged` per fix, depends only on the fix and the rules, never on device
state, so the stateful rules that follow can run in any lane without redoing geometry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import msgspec
import numpy as np

from geofence.model import Fix, Quality
from geofence.policy import Policy
from geofence.ruleset import RuleSet

NO_POSITION = 0  # class when there is nothing to judge (no fix, or no such rule)
SURELY_OUT = -2  # geofence.area's class for a fix whose whole error circle is outside
SURELY_IN = 2
Classified = Iterable[tuple[int, int, float]]  # (index into the batch, class, depth)


class Judged(msgspec.Struct, gc=False):
    fix: Fix
    supervisee: str
    policy: Policy
    flags: int  # Quality bitmask
    radius: float  # effective error radius, metres
    allowed: int = NO_POSITION  # class against jurisdiction ∪ active leave destinations
    depth: float = 1.0  # when surely outside the allowed area: radii beyond its border
    leave: str | None = None  # id of the leave whose window the fix falls in
    trip_s: int = 0  # during a leave: how long the trip between its places plausibly takes
    after_leave: str | None = None  # id of the leave that ended before this fix
    # (zone id, class, depth) for zones in force, but for those the fix is surely outside
    # of; depth in radii inside the zone's border when surely inside
    exclusion: tuple[tuple[str, int, float], ...] = ()
    home: int = NO_POSITION  # class against the home zone while the curfew is in force
    home_depth: float = 1.0  # when surely outside the home zone: radii beyond its border
    late: bool = False  # reached us long after it was taken


def error_radius(fix: Fix, policy: Policy) -> tuple[float, int]:
    """(radius in metres, quality flags) for a fix's error circle under `policy`."""
    flags = 0
    if fix.acc is None:
        acc = policy.acc_unknown_m
        flags |= Quality.ACC_UNKNOWN
    else:
        acc = fix.acc
    src = fix.src or ("cell" if acc >= policy.coarse_acc_m else "")
    radius = max(acc, policy.acc_floor_m.get(src, 0.0)) * policy.acc_factor.get(
        src, policy.acc_factor_default
    )
    if radius > policy.acc_max_m:
        flags |= Quality.ACC_POOR
    return radius, flags


def judge(rules: RuleSet, fixes: list[Fix]) -> list[Judged]:
    out: list[Judged] = []
    # zone-id tuple → indices into `out` (and the matching tuple slot for exclusions)
    allowed_groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    exclusion_groups: dict[str, list[int]] = defaultdict(list)
    home_groups: dict[str, list[int]] = defaultdict(list)
    # Hoisted: this loop runs once per fix on the hot path.
    supervisees, owner, zones_by_id = rules.supervisees, rules.device_owner, rules.zones
    policy_of, zone_active, area_of = rules.policy, rules.zone_active, rules.area
    for fix in fixes:
        person = supervisees[owner[fix.device]]
        policy = policy_of(fix.device, fix.ts)
        late = fix.at - fix.ts > policy.late_after_s * 1000
        flags = Quality.LATE if late else 0
        if fix.gcj02:
            flags |= Quality.GCJ02
        if not fix.has_position:
            out.append(Judged(fix, person.id, policy, flags | Quality.NO_FIX, 0.0, late=late))
            continue
        radius, acc_flags = error_radius(fix, policy)
        j = Judged(fix, person.id, policy, flags | acc_flags, radius, late=late)
        index = len(out)
        out.append(j)
        if acc_flags & Quality.ACC_POOR:
            continue
        if person.jurisdiction:
            zones = person.jurisdiction
            if person.leaves:
                leave = rules.active_leave(person, fix.ts)
                if leave is not None:
                    j.leave = leave.id
                    j.trip_s = rules.trip_s(person, leave, policy)
                    zones = tuple(dict.fromkeys((*zones, *leave.destinations)))
                else:
                    ended = rules.last_leave_end(person, fix.ts)
                    j.after_leave = ended.id if ended is not None else None
            allowed_groups[zones].append(index)
        for zone_id in person.exclusion:
            # A fix far from the zone is left out of it without the vectorised pass, as
            # that pass would leave it out (SURELY_OUT): most fixes, as most zones are a
            # victim's street, not the supervisee's.
            if zone_active(zones_by_id[zone_id], fix.ts) and not area_of((zone_id,)).surely_out(
                fix.lat or 0.0, fix.lon or 0.0, radius
            ):
                exclusion_groups[zone_id].append(index)
        if person.home is not None and zone_active(zones_by_id[person.home], fix.ts):
            home_groups[person.home].append(index)

    if not (allowed_groups or exclusion_groups or home_groups):
        return out
    lats = np.array([j.fix.lat or 0.0 for j in out])
    lons = np.array([j.fix.lon or 0.0 for j in out])
    radii = np.array([j.radius for j in out])

    def classify(zone_ids: tuple[str, ...], idx: list[int], violating: int) -> Classified:
        """Classes of the fixes at `idx`, and the depth of those surely on the violating
        side (+2 inside an exclusion zone, -2 outside an allowed area or home)."""
        sel = np.asarray(idx)
        area = rules.area(zone_ids)
        classes = area.classify(lats[sel], lons[sel], radii[sel])
        depths = np.ones(len(idx))
        sure = np.flatnonzero(classes == violating)
        if sure.size:
            at = sel[sure]
            depths[sure] = area.depth(lats[at], lons[at], radii[at])
        return zip(idx, classes.tolist(), depths.tolist(), strict=True)

    for zones, idx in allowed_groups.items():
        for i, cls, depth in classify(zones, idx, SURELY_OUT):
            out[i].allowed, out[i].depth = cls, depth
    for zone_id, idx in exclusion_groups.items():
        for i, cls, depth in classify((zone_id,), idx, SURELY_IN):
            if cls != SURELY_OUT:  # the usual case, and what a zone left out means
                out[i].exclusion += ((zone_id, cls, depth),)
    for zone_id, idx in home_groups.items():
        for i, cls, depth in classify((zone_id,), idx, SURELY_OUT):
            out[i].home, out[i].home_depth = cls, depth
    return out
