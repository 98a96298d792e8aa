"""The whole per-fix pipeline, in order. Each stage is a small function in its own module,
`(context, track, judged fix) -> go on?`; geometry has already been judged for the batch
(geofence.judge) and the fix routed to its device's live or late track (geofence.engine).
"""

from __future__ import annotations

from collections.abc import Callable

from geofence import confirm
from geofence.context import StepContext
from geofence.judge import Judged
from geofence.stages import (
    curfew,
    dedup,
    drift,
    exclusion,
    health,
    jump,
    jurisdiction,
    pursuit,
)
from geofence.state import Track

Stage = Callable[[StepContext, Track, Judged], bool]

STAGES: tuple[Stage, ...] = (
    dedup.run,  # a QoS 1 redelivery stops here
    health.no_fix,  # device health comes from every report, with a position or not
    health.battery,
    health.strap,
    jump.run,  # multipath and cell jumps are flagged, not believed
    drift.run,  # so is a still device's fix far from where it rests
    jurisdiction.run,  # left the allowed area (jurisdiction + leave)
    exclusion.run,  # entered a prohibition-order zone
    curfew.run,  # away from home during curfew
    pursuit.run,  # a breach pending or open: the device is asked to report faster
)


def run(ctx: StepContext, track: Track, j: Judged) -> None:
    for stage in STAGES:
        if not stage(ctx, track, j):
            return


def back_since(track: Track, rule: str) -> int | None:
    """Device time from which `track` (a device's live track) shows the person surely not
    breaching `rule` any more, or None while it may still be: what ends an episode that
    out-of-order fixes opened (geofence.engine)."""
    kind, _, zone = rule.partition(":")
    if kind == exclusion.TYPE:
        if zone in track.exclusion or track.anchor is None:
            return None  # a streak there, or no trusted position yet
        return track.anchor[3]
    if kind == jurisdiction.RULE:
        c = track.jurisdiction
    elif kind == curfew.RULE:
        c = track.curfew
    else:
        return None
    return c.good_ts if c.phase == confirm.CLEAR and c.good_ts >= 0 else None
