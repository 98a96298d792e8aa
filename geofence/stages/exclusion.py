"""Prohibition-order exclusion zones (禁止令): inside one, while it is in force, is a breach,
one episode per zone."""

from __future__ import annotations

from geofence import confirm
from geofence.confirm import Confirm
from geofence.context import StepContext
from geofence.judge import SURELY_OUT, Judged
from geofence.model import Quality
from geofence.state import NO_EXCLUSION, Track

TYPE = "exclusion_enter"
SKIP = Quality.NO_FIX | Quality.ACC_POOR | Quality.JUMP | Quality.DRIFT


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if j.flags & SKIP or not (track.exclusion or any(cls == 2 for _, cls, _ in j.exclusion)):
        return True  # nothing to confirm and nothing to clear: the usual case, kept cheap
    fix, policy = j.fix, j.policy
    scores = {zone_id: (cls, depth) for zone_id, cls, depth in j.exclusion}
    # A zone left out (out of force now, or surely outside) counts as a compliant fix: it
    # ends a breach it had.
    for zone_id in set(scores) | set(track.exclusion):
        score, depth = scores.get(zone_id, (SURELY_OUT, 1.0))
        c = track.exclusion.get(zone_id)
        if c is None:
            if score != 2:
                continue
            if track.exclusion is NO_EXCLUSION:
                track.exclusion = {}
            c = track.exclusion[zone_id] = Confirm()
        event = confirm.step(c, score, fix.ts, j.radius, policy, depth)
        rule = f"{TYPE}:{zone_id}"
        ctx.confirmation(rule, TYPE, j, c, event, {"zone": zone_id})
        if c.phase == confirm.CLEAR:
            del track.exclusion[zone_id]
    if not track.exclusion:
        track.exclusion = NO_EXCLUSION
    return True
