"""The whole map of rules, in order: what every fix, every device event and the clock go
through. Each stage is a small function in its own module under geofence/stages.

- A fix: `(context, track, judged fix) -> go on?`. Geometry has already been judged for the
  batch (geofence.judge) and the fix routed to its device's live or late track
  (geofence.engine).
- A device event: `(context, event step) -> did the device's silence deadline move?`.
- The clock: one rule, lost contact (geofence.stages.offline), whose deadlines the engine
  keeps.
"""

from __future__ import annotations

from collections.abc import Callable

from geofence import confirm
from geofence.context import EventStep, StepContext
from geofence.judge import Judged
from geofence.stages import (
    curfew,
    dedup,
    drift,
    exclusion,
    health,
    jump,
    jurisdiction,
    offline,
    pursuit,
    separation,
    sos,
)
from geofence.state import Track

Stage = Callable[[StepContext, Track, Judged], bool]
EventStage = Callable[[StepContext, EventStep], bool]

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
    separation.run,  # the person's tag and phone are surely not together (人机分离)
    pursuit.run,  # a breach pending or open: the device is asked to report faster
)

EVENT_STAGES: tuple[EventStage, ...] = (
    health.strap_event,  # strap_open / strap_cut
    health.battery_event,  # low_battery / charging
    offline.on_event,  # power_off / lwt: going quiet
    sos.on_event,
)

# Before any stage: whether a fix is a redelivery of one already judged (the live and late
# tracks share the device's sequence numbers, so the engine asks before routing a fix).
redelivered = dedup.seen_before
newer = dedup.is_newer

# The clock's rule: when a device's silence becomes lost contact, and what hearing from it
# again does (geofence.engine keeps the deadlines).
silence_deadline = offline.deadline
heard_from = offline.heard
silent = offline.fire


def run(ctx: StepContext, track: Track, j: Judged) -> None:
    for stage in STAGES:
        if not stage(ctx, track, j):
            return


def run_event(ctx: StepContext, step: EventStep) -> bool:
    """True when the event moved the device's silence deadline."""
    moved = False
    for stage in EVENT_STAGES:
        moved |= stage(ctx, step)
    return moved


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
