"""Pursuit: while a breach is pending or open on a device's live track, ask the device to
report every `pursuit_interval_s` (the service sends the command), so the evidence that
confirms or clears it comes in seconds rather than minutes; relax once none is."""

from __future__ import annotations

from geofence import confirm
from geofence.context import StepContext
from geofence.judge import Judged
from geofence.model import Verdict
from geofence.state import Track

TYPE = "pursuit"


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    if ctx.late_track:
        return True  # the past cannot be asked to report faster
    wanted = (
        bool(track.exclusion)  # holds only the zones whose breach is pending or open
        or track.jurisdiction.phase != confirm.CLEAR
        or track.curfew.phase != confirm.CLEAR
    )
    if wanted != track.pursuing:
        track.pursuing = wanted
        fix = j.fix
        action, detail = (
            ("pursue", {"interval_s": j.policy.pursuit_interval_s}) if wanted else ("relax", {})
        )
        ctx.verdicts.append(
            Verdict(
                action,
                TYPE,
                j.supervisee,
                fix.device,
                fix.ts,
                f"{TYPE}:{fix.device}",
                detail=detail,
            )
        )
    return True
