"""Multipath spikes and cell hops: a fix that would need an impossible speed from the last
trusted position is flagged and not believed, unless the next fix agrees with it (then the
person really moved, e.g. the first fix after a long gap)."""

from __future__ import annotations

import math

from geofence.context import StepContext
from geofence.judge import Judged
from geofence.model import Quality
from geofence.state import Track

_M_PER_DEG = 111_195.0
UNUSABLE = Quality.NO_FIX | Quality.ACC_POOR


def _plausible(
    a: tuple[float, float, float, int], b: tuple[float, float, float, int], vmax: float
) -> bool:
    dy = (b[0] - a[0]) * _M_PER_DEG
    dx = (b[1] - a[1]) * _M_PER_DEG * math.cos(math.radians(a[0]))
    gap = math.hypot(dx, dy) - a[2] - b[2]
    return gap <= vmax * max(abs(b[3] - a[3]) / 1000.0, 1.0)


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if j.flags & UNUSABLE:
        return True
    fix = j.fix
    here = (float(fix.lat or 0.0), float(fix.lon or 0.0), j.radius, fix.ts)
    vmax = j.policy.max_speed_mps
    agrees = (track.anchor is None or _plausible(track.anchor, here, vmax)) or (
        track.suspect is not None and _plausible(track.suspect, here, vmax)
    )
    if agrees:
        track.anchor, track.suspect = here, None
    else:
        track.suspect = here
        j.flags |= Quality.JUMP
    return True
