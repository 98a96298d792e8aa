"""Multipath spikes and cell hops: a fix that would need an impossible speed from the last
trusted position is flagged and not believed, unless the next fix agrees with it (then the
person really moved, e.g. the first fix after a long gap).

A device that reports real speeds gets no such benefit of the doubt for `jump_recover_s`
after its last trusted fix: multipath can put two or three fixes in a row at the same wrong
place, and its own Doppler readings, which deny the leap, are the better witness.

"Impossible" is the policy's top speed — or, when both fixes carry a Doppler speed from a
device known to report real speeds, what those speeds allow: a receiver measures speed
from the Doppler shift independently of its position, so a fix hundreds of metres away
while both readings say "walking pace" is a reflected signal, not a sprint. A rejected
fix's position is not believed, but its speed reading is: multipath bends the position, not
the Doppler shift. So the distance allowed since the last trusted fix is added up through the
speed readings of the fixes rejected since (`Track.reach`); measured from the last trusted
fix with only the two ends' readings, the allowance grew with every rejected fix until a
reflection right after another passed as a ride (docs/rules.md, "Multipath").
"""

from __future__ import annotations

from geofence.context import StepContext
from geofence.geo import metres
from geofence.judge import Judged
from geofence.model import Quality
from geofence.state import Point, Track

UNUSABLE = Quality.NO_FIX | Quality.ACC_POOR
# Room for acceleration between two speed readings: ×1.5 and 2 m/s on top of the faster.
_DOPPLER_FACTOR, _DOPPLER_SLACK_MPS = 1.5, 2.0


def _allowed(a: Point, b: Point, vmax: float, doppler: bool) -> float:
    """Metres a person could cover between the times of `a` and `b`."""
    if doppler and a[4] >= 0 and b[4] >= 0:
        vmax = min(vmax, max(a[4], b[4]) * _DOPPLER_FACTOR + _DOPPLER_SLACK_MPS)
    return vmax * max(abs(b[3] - a[3]) / 1000.0, 1.0)


def _plausible(a: Point, b: Point, allowed: float) -> bool:
    return metres(a[0], a[1], b[0], b[1]) - a[2] - b[2] <= allowed


def _reach(track: Track, here: Point, vmax: float, doppler: bool) -> float:
    """Metres allowed from the anchor to `here`: through the last rejected fix's speed
    reading when it has one (its `reach` covers the way to it), else straight."""
    anchor, suspect = track.anchor, track.suspect
    assert anchor is not None
    if doppler and suspect is not None and suspect[4] >= 0 and suspect[3] > anchor[3]:
        return track.reach + _allowed(suspect, here, vmax, doppler)
    return _allowed(anchor, here, vmax, doppler)


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if j.flags & UNUSABLE:
        return True
    fix = j.fix
    if fix.spd is not None and fix.spd > 0.05:
        track.speed_seen = True
    speed = fix.spd if fix.spd is not None else -1.0
    here = (float(fix.lat or 0.0), float(fix.lon or 0.0), j.radius, fix.ts, speed)
    vmax, doppler = j.policy.max_speed_mps, track.speed_seen
    anchor, suspect = track.anchor, track.suspect
    if anchor is None:
        track.anchor = here
        return True
    reach = _reach(track, here, vmax, doppler)
    agrees = _plausible(anchor, here, reach) or (
        suspect is not None
        and _plausible(suspect, here, _allowed(suspect, here, vmax, doppler))
        # A reflection can repeat for a fix or two: while the last trusted fix is recent
        # and the device's Doppler denied the leap, agreeing with the suspect proves nothing.
        and (not doppler or fix.ts - anchor[3] >= j.policy.jump_recover_s * 1000)
    )
    if agrees:
        track.anchor, track.suspect, track.reach = here, None, 0.0
    else:
        track.suspect, track.reach = here, reach
        j.flags |= Quality.JUMP
    return True
