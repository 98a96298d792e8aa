"""The whole per-fix pipeline, in order. Each stage is a small function in its own module,
`(context, track, judged fix) -> go on?`; geometry has already been judged for the batch
(geofence.judge) and the fix routed to its device's live or late track (geofence.engine).
"""

from __future__ import annotations

from collections.abc import Callable

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
