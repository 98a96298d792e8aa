"""SOS (求助): every press of the button is an alert of its own."""

from __future__ import annotations

from geofence.context import EventStep, StepContext

TYPE = "sos"


def on_event(ctx: StepContext, step: EventStep) -> bool:
    e = step.event
    if e.type == TYPE:
        # Opened and ended at once: the alert waits for a person, the episode does not.
        rule = f"{TYPE}:{e.device}"
        ctx.open(rule, TYPE, step.owner, e.device, start=e.ts, ts=e.ts, late=step.late)
        ctx.close(rule, TYPE, step.owner, e.device, e.ts)
    return False
