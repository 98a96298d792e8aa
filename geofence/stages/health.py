"""Device health, from position reports and from device events alike: no position fix,
battery, strap."""

from __future__ import annotations

from geofence.context import EventStep, StepContext
from geofence.judge import Judged
from geofence.state import Track

TAMPERED = ("open", "cut")


def no_fix(ctx: StepContext, track: Track, j: Judged) -> bool:
    """Reports keep coming but none has a position (信号丢失): raised after `no_fix_s`."""
    fix = j.fix
    rule = f"no_fix:{fix.device}"
    if fix.has_position:
        if track.no_fix_alerted:
            ctx.close(rule, "no_fix", j.supervisee, fix.device, fix.ts)
        track.no_fix_since, track.no_fix_alerted = None, False
        return True
    if track.no_fix_since is None:
        track.no_fix_since = fix.ts
    elif not track.no_fix_alerted and fix.ts - track.no_fix_since >= j.policy.no_fix_s * 1000:
        track.no_fix_alerted = True
        ctx.open(
            rule,
            "no_fix",
            j.supervisee,
            fix.device,
            start=track.no_fix_since,
            ts=fix.ts,
            late=j.late,
        )
    return True


def battery(ctx: StepContext, track: Track, j: Judged) -> bool:
    fix = j.fix
    if fix.batt is not None:
        set_battery(
            ctx,
            track,
            j.supervisee,
            fix.device,
            fix.ts,
            j.late,
            fix.batt,
            fix.chg,
            j.policy.low_battery_pct,
            j.policy.battery_clear_pct,
        )
    return True


def set_battery(
    ctx: StepContext,
    track: Track,
    supervisee: str,
    device: str,
    ts: int,
    late: bool,
    level: int | None,
    charging: bool | None,
    low_pct: int,
    clear_pct: int,
) -> None:
    """Low battery below `low_pct` while not charging; cleared by charging or `clear_pct`
    (the gap between the two keeps a battery hovering at the threshold from flapping)."""
    rule = f"low_battery:{device}"
    if not track.battery_low and level is not None and level <= low_pct and not charging:
        track.battery_low = True
        ctx.open(
            rule,
            "low_battery",
            supervisee,
            device,
            start=ts,
            ts=ts,
            late=late,
            detail={"batt": level},
        )
    elif track.battery_low and (charging or (level is not None and level >= clear_pct)):
        track.battery_low = False
        ctx.close(rule, "low_battery", supervisee, device, ts)


def strap(ctx: StepContext, track: Track, j: Judged) -> bool:
    fix = j.fix
    if fix.strap is not None:
        set_strap(ctx, track, j.supervisee, fix.device, fix.ts, j.late, fix.strap)
    return True


def set_strap(
    ctx: StepContext, track: Track, supervisee: str, device: str, ts: int, late: bool, strap: str
) -> None:
    """Strap opened or cut (防拆) is raised at once: no confirmation for tampering. Closing
    the strap ends the episode but the alert waits for a person's disposition."""
    rule = f"strap_tamper:{device}"
    if strap in TAMPERED and not track.strap_open:
        track.strap_open = True
        ctx.open(
            rule,
            "strap_tamper",
            supervisee,
            device,
            start=ts,
            ts=ts,
            late=late,
            detail={"strap": strap},
        )
    elif strap == "ok" and track.strap_open:
        track.strap_open = False
        ctx.close(rule, "strap_tamper", supervisee, device, ts)


def battery_event(ctx: StepContext, step: EventStep) -> bool:
    """A `low_battery` event is a low reading; `charging` ends a low battery."""
    e, policy = step.event, step.policy
    if e.type in ("low_battery", "charging"):
        charging = e.type == "charging"
        set_battery(
            ctx,
            step.device.live,
            step.owner,
            e.device,
            e.ts,
            step.late,
            None if charging else policy.low_battery_pct,
            charging,
            policy.low_battery_pct,
            policy.battery_clear_pct,
        )
    return False


def strap_event(ctx: StepContext, step: EventStep) -> bool:
    e = step.event
    if e.type in ("strap_open", "strap_cut"):
        strap = e.type.removeprefix("strap_")
        set_strap(ctx, step.device.live, step.owner, e.device, e.ts, step.late, strap)
    return False
