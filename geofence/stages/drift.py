"""Indoor drift and multipath on a still device: a fix far from where the device has been
resting, while its own Doppler speed says it is not moving, is not a person walking.

A person cannot reach a place hundreds of metres away without moving, and satellite
receivers measure speed from the Doppler shift independently of the position fix, so a
still reading far from the resting point is the position that is wrong. Such fixes are
flagged DRIFT and the geofence rules skip them. The resting point is where the first still
fix after motion (or after a gap in reporting) put it, pulled slowly along by the still
fixes near it; a long-lasting offset moves it to wherever the device is. A device that never
reports a non-zero speed says nothing about stillness, so for it this stage does nothing.
"""

from __future__ import annotations

from geofence.context import StepContext
from geofence.geo import metres
from geofence.judge import Judged
from geofence.model import Quality
from geofence.state import Track

SKIP = Quality.NO_FIX | Quality.ACC_POOR | Quality.JUMP


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if j.flags & SKIP:
        return True
    fix, policy = j.fix, j.policy
    lat, lon, ts = float(fix.lat or 0.0), float(fix.lon or 0.0), fix.ts
    rest = track.rest
    if (
        fix.spd is None
        and rest is not None
        and track.speed_seen
        and metres(lat, lon, rest[0], rest[1]) <= j.radius + policy.drift_m
    ):
        # A fix with no speed (cell, wifi) cannot tell motion; it shows some only when it
        # is surely away from the resting point, beyond its own wide circle.
        return True
    if fix.spd is None or not track.speed_seen:
        # We cannot tell: no resting point until the device says it is still again.
        track.rest, track.drift_since, track.stirring = None, None, False
        return True
    if fix.spd >= policy.still_mps:
        # Doppler noise on a still receiver reaches half a metre a second now and then,
        # just as an excursion sets in: one such reading is not yet a walk. A clear pace,
        # or a second reading in a row, is.
        if fix.spd >= policy.moving_mps or track.stirring:
            track.rest, track.drift_since = None, None
        track.stirring = True
        return True
    track.stirring = False
    if rest is None or ts - rest[2] > policy.rest_gap_s * 1000:
        track.rest, track.drift_since = (lat, lon, ts), None
        return True
    if metres(lat, lon, rest[0], rest[1]) > max(policy.drift_m, fix.acc or 0.0):
        if track.drift_since is None:
            track.drift_since = ts
        if ts - track.drift_since < policy.drift_max_s * 1000:
            j.flags |= Quality.DRIFT
            track.rest = (rest[0], rest[1], ts)
            return True
        # Far for that long and still: this is where the device now is.
        track.rest, track.drift_since = (lat, lon, ts), None
        return True
    track.drift_since = None
    pull = min(1.0, (ts - rest[2]) / (policy.rest_tau_s * 1000))
    track.rest = (rest[0] + pull * (lat - rest[0]), rest[1] + pull * (lon - rest[1]), ts)
    return True
