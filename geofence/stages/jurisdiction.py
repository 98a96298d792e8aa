"""Jurisdiction (执行地, 社区矫正法 Art. 27): outside the allowed area — the person's
jurisdiction plus, during an approved leave, its destinations — is a breach.

During a leave, being outside both is tolerated only while the person is travelling
between them: for no longer than the trip plausibly takes, and never stopped in one place
for more than `leave_dwell_s`. Someone who has stopped in a third county is not on the
road; they are somewhere they were not allowed to go. Never past the leave's end."""

from __future__ import annotations

from geofence import confirm
from geofence.context import StepContext
from geofence.geo import metres
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
    c = track.jurisdiction
    cause = None
    if score < 0:
        track.travel_since = track.stop = None
    elif j.leave is not None and score == 2 and c.phase != confirm.BREACH:
        cause, since = _off_route(track, j)
        if cause is None:
            score = 0
    if cause is not None:
        # Many fixes over many minutes outside every allowed place: confirmed as it is.
        event: str | None = confirm.settle(c, since)
    else:
        event = confirm.step(c, score, fix.ts, j.radius, policy, j.depth)
    detail: dict = {}
    if event == "raise":
        if j.leave is not None:
            detail["leave"] = j.leave
        elif j.after_leave is not None:
            detail["after_leave"] = j.after_leave
        if cause is not None:
            detail["cause"] = cause
    ctx.confirmation(RULE, TYPE, j, c, event, detail)
    return True


def _off_route(track: Track, j: Judged) -> tuple[str | None, int]:
    """On leave and surely outside every allowed place: (None, 0) while this still looks
    like the trip, else (cause, since when the person has been off their route)."""
    fix, policy = j.fix, j.policy
    lat, lon, ts = float(fix.lat or 0.0), float(fix.lon or 0.0), fix.ts
    if track.travel_since is None:
        track.travel_since = ts
    stop = track.stop
    if stop is None or _moved(stop, lat, lon, j.radius, policy.stop_radius_m):
        stop = track.stop = (lat, lon, j.radius, ts)
    if ts - stop[3] > policy.leave_dwell_s * 1000:
        return "stopped_outside_destinations", stop[3]
    if ts - track.travel_since > j.trip_s * 1000:
        return "trip_overlong", track.travel_since + j.trip_s * 1000
    return None, 0


def _moved(
    stop: tuple[float, float, float, int], lat: float, lon: float, radius: float, near_m: float
) -> bool:
    """Surely left the stop: further than `near_m` plus the wider of the two error circles,
    so neither drift nor a coarse fix makes a stop look like travel."""
    return metres(lat, lon, stop[0], stop[1]) > near_m + max(radius, stop[2])
