"""Device separation (人机分离): a person who wears a tag and carries a phone, whose two
devices are surely not in the same place — left at home, handed to a relative, kept in a
drawer while its owner travels.

Two devices' fixes are compared only when taken within `separation_pair_s` of each other
(both fresh). They are *apart* when the distance between them exceeds both error circles,
plus how far the person could have gone between the two instants (at the faster of their
reported speeds, or `separation_speed_mps` when either has none), plus `separation_m`;
*together* when it is within the circles and that reach, the reach being short (the way
at most `separation_m`, all of it at most `trust_max_m`: fixes far apart in time, or a
cell fix kilometres wide, fit anywhere). Anything else says nothing.

Apart pairs with no together pair between, spanning `separation_s`, no two of them more
than `separation_gap_s` apart: `device_separation`, naming the phone; the first together
pair ends it. A wrong fix apart now and then (a wifi outlier, an indoor excursion) never
spans that long; a phone left at home does at every one of its pings.

Only trusted fixes of the live tracks count (no jumps, no drift, not too coarse): the
present is what a separation is about. The rest is explained in docs/rules.md.
"""

from __future__ import annotations

from geofence.context import StepContext
from geofence.geo import metres
from geofence.judge import Judged
from geofence.model import Quality
from geofence.state import Point, Track

TYPE = "device_separation"
SKIP = Quality.NO_FIX | Quality.ACC_POOR | Quality.JUMP | Quality.DRIFT | Quality.DUPLICATE
# Recent trusted fixes kept per device: a batch is judged device by device, so a phone's
# fix may come to be judged after several newer fixes of the tag; the one nearest in time
# is its pair.
KEEP = 8


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if ctx.late_track or j.flags & SKIP:
        return True
    if ctx.paired is not None and j.supervisee not in ctx.paired:
        # One device: nothing to compare, and most people wear one, so nothing is kept
        # (the eight fixes and the person's state would be most of a tag's memory).
        return True
    fix, policy = j.fix, j.policy
    person = ctx.person(j.supervisee)
    here: Point = (
        float(fix.lat or 0.0),
        float(fix.lon or 0.0),
        j.radius,
        fix.ts,
        -1.0 if fix.spd is None else fix.spd,
    )
    apart: tuple[str, Point, float] | None = None
    together = False
    for other, points in person.seen.items():
        if other == fix.device:
            continue
        there = min(points, key=lambda p: abs(fix.ts - p[3]))
        if abs(fix.ts - there[3]) > policy.separation_pair_s * 1000:
            continue
        known = here[4] >= 0 and there[4] >= 0
        speed = max(here[4], there[4], 0.0 if known else policy.separation_speed_mps)
        moved = abs(fix.ts - there[3]) / 1000 * speed
        reach = here[2] + there[2] + moved
        distance = metres(here[0], here[1], there[0], there[1])
        if distance > reach + policy.separation_m:
            apart = (other, there, distance)
        elif distance <= reach <= policy.trust_max_m and moved <= policy.separation_m:
            # Together only on near-simultaneous, fine evidence: fixes far apart in time,
            # or a network fix kilometres wide, fit any two places, and say nothing.
            together = True
    kept = person.seen.setdefault(fix.device, [])
    kept.append(here)
    del kept[:-KEEP]
    if together:
        person.apart = None
        if person.separated is not None:
            ctx.close(TYPE, TYPE, j.supervisee, person.separated, fix.ts)
            person.separated = None
        return True
    if apart is None:
        return True
    other, there, distance = apart
    began, ended = sorted((fix.ts, there[3]))
    gap = policy.separation_gap_s * 1000
    streak = person.apart
    if streak is None or began - streak[1] > gap or streak[0] - ended > gap:
        person.apart = (began, ended)
        return True
    person.apart = streak = (min(streak[0], began), max(streak[1], ended))
    if person.separated is None and streak[1] - streak[0] >= policy.separation_s * 1000:
        # The phone is the one that is not with the person (a tag is fitted).
        named, far = (other, there) if ctx.kinds.get(other) == "phone" else (fix.device, here)
        near = here if far is there else there
        person.separated = named
        ctx.open(
            TYPE,
            TYPE,
            j.supervisee,
            named,
            start=streak[0],
            ts=fix.ts,
            late=j.late,
            detail={
                "lat": far[0],
                "lon": far[1],
                "radius_m": round(far[2], 1),
                "with_person": other if named == fix.device else fix.device,
                "person_lat": near[0],
                "person_lon": near[1],
                "person_radius_m": round(near[2], 1),
                "distance_m": round(distance),
                "apart_s": (streak[1] - streak[0]) // 1000,
            },
            reopen_ms=policy.reopen_s * 1000,
        )
    return True
