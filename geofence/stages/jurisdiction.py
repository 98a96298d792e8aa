"""Jurisdiction (执行地, 社区矫正法 Art. 27): outside the allowed area — the person's
jurisdiction plus, during an approved leave, its destinations — is a breach. On the road
during a leave, being outside both is tolerated for a while, never past the leave's end."""

from __future__ import annotations

from geofence import confirm
from geofence.context import StepContext
from geofence.judge import NO_POSITION, Judged
from geofence.model import Quality
from geofence.state import Track

RULE = TYPE = "jurisdiction_exit"
SKIP = Quality.NO_FIX | Quality.ACC_POOR | Quality.JUMP | Quality.DRIFT


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if j.flags & SKIP or j.allowed == NO_POSITION:
        return True
    fix, policy = j.fix, j.policy
    score = -j.allowed
    if j.leave is not None and score == 2:
        if track.travel_since is None:
            track.travel_since = fix.ts
        if fix.ts - track.travel_since < policy.leave_travel_s * 1000:
            score = 0
    elif score < 0:
        track.travel_since = None
    event = confirm.step(track.jurisdiction, score, fix.ts, j.radius, policy)
    if event == "raise":
        detail: dict = {"lat": fix.lat, "lon": fix.lon, "acc": fix.acc}
        if j.leave is not None:
            detail["leave"] = j.leave
        elif j.after_leave is not None:
            detail["after_leave"] = j.after_leave
        start = track.jurisdiction.start
        reopen = policy.reopen_s * 1000
        ctx.open(RULE, TYPE, j.supervisee, fix.device, start, fix.ts, j.late, detail, reopen)
    elif event == "clear":
        ctx.close(RULE, TYPE, j.supervisee, fix.device, fix.ts)
    return True
