"""Lost contact (失联, 社区矫正法 Art. 29, 30): nothing heard from a device for
`offline_s` on the arrival clock is `device_offline`; a `power_off` event shortens the wait
to `power_off_grace_s`, an OwnTracks will (`lwt`: the phone's connection died) to
`connection_lost_grace_s`. Hearing from the device again ends the episode.

The clock's one rule: the engine keeps each device's deadline (geofence.engine) and asks
this module what it is, and what to say when it passes."""

from __future__ import annotations

from geofence.context import EventStep, StepContext
from geofence.policy import Policy
from geofence.state import DeviceState

TYPE = "device_offline"


def deadline(dev: DeviceState, policy: Policy) -> tuple[int, str]:
    """(arrival time after which the device counts as offline, why)."""
    due, cause = dev.last_at + policy.offline_s * 1000, "silent"
    if dev.power_off_at is not None:
        off = dev.power_off_at + policy.power_off_grace_s * 1000
        if off < due:
            due, cause = off, "power_off"
    if dev.lost_at is not None:
        lost = dev.lost_at + policy.connection_lost_grace_s * 1000
        if lost < due:
            due, cause = lost, "connection_lost"
    return due, cause


def heard(ctx: StepContext, dev: DeviceState, owner: str, device: str, at: int) -> None:
    """A message from the device arrived at `at`."""
    dev.last_at = max(dev.last_at, at)
    dev.power_off_at = dev.lost_at = None
    if dev.offline:
        dev.offline = False
        ctx.close(f"{TYPE}:{device}", TYPE, owner, device, at)


def on_event(ctx: StepContext, step: EventStep) -> bool:
    """A device about to go quiet says so: its deadline moves closer."""
    e, dev = step.event, step.device
    if e.type == "power_off":
        dev.power_off_at = e.at
    elif e.type == "lwt":
        dev.lost_at = e.at
    else:
        return False
    return True


def fire(ctx: StepContext, dev: DeviceState, owner: str, device: str, due: int, cause: str) -> None:
    """The deadline passed with nothing heard. The person's other devices that kept
    reporting after this one fell silent are named (`still_reporting`): a phone gone quiet
    while the tag's fixes go on is a sign it is not with the person (人机分离)."""
    dev.offline = True
    detail: dict = {"last_seen": dev.last_at, "cause": cause}
    person = ctx.people.get(owner)
    others = sorted(
        o
        for o, points in (person.seen if person else {}).items()
        if o != device and max(p[3] for p in points) > dev.last_at
    )
    if others:
        detail["still_reporting"] = others
    ctx.open(
        f"{TYPE}:{device}",
        TYPE,
        owner,
        device,
        start=dev.last_at,
        ts=due,
        late=False,
        detail=detail,
    )
