"""Curfew: while the home zone's schedule is in force, outside it is a breach. Outside the
schedule a usable fix counts as compliant, so a breach ends when the curfew does."""

from __future__ import annotations

from geofence import confirm
from geofence.context import StepContext
from geofence.judge import NO_POSITION, Judged
from geofence.model import Quality
from geofence.state import Track

RULE = TYPE = "curfew_breach"
SKIP = Quality.NO_FIX | Quality.ACC_POOR | Quality.JUMP | Quality.DRIFT


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if j.flags & SKIP:
        return True
    fix, policy = j.fix, j.policy
    c = track.curfew
    if j.home == NO_POSITION:  # no curfew in force now: whatever breach there was is over
        c.good_ts = fix.ts
        if c.phase == confirm.CLEAR:
            return True
        event = confirm.end(c)
    elif j.home == 2 and c.phase == confirm.CLEAR:  # at home, nothing pending: the usual
        if j.radius <= policy.trust_max_m:
            c.good_ts = fix.ts
        return True
    else:
        event = confirm.step(c, -j.home, fix.ts, j.radius, policy, j.home_depth)
    ctx.confirmation(RULE, TYPE, j, c, event, {})
    return True
