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
    score = -j.home if j.home != NO_POSITION else -2
    if score == -2 and track.curfew.phase == confirm.CLEAR:
        return True
    c = track.curfew
    event = confirm.step(c, score, fix.ts, j.radius, policy, j.home_depth)
    if event == "raise":
        ctx.open(
            RULE,
            TYPE,
            j.supervisee,
            fix.device,
            start=c.start,
            ts=fix.ts,
            late=j.late,
            detail={"lat": fix.lat, "lon": fix.lon, "acc": fix.acc},
            reopen_ms=policy.reopen_s * 1000,
            inside_before=c.good_ts,
        )
    elif event == "clear":
        ctx.close(RULE, TYPE, j.supervisee, fix.device, fix.ts)
    ctx.streak(RULE, TYPE, j.supervisee, fix.device, c, fix.ts)
    return True
