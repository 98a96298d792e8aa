"""A device publishing live: the device model run against the wall clock, over a real link.

A plan is written in its own time (a demo built a minute ago, a day that starts at 07:00);
`retime` lays it onto the wall clock from now, `speedup` times faster, so the reported
`ts` is always the real time of publishing and the service sees a device that is live now.
(With a speed-up, people move faster in wall time: keep it modest if the engine rejects
implausible speeds.)

The tag holds its messages while it cannot publish — in a coverage gap of its plan, while
the broker is unreachable, or while too many of its QoS 1 messages are unacknowledged —
and then uploads them as `batch` messages, as real tags do.

It obeys the service's commands (`command`): a tag those of spec 4.1 on `em/<id>/cmd`,
acknowledged on `em/<id>/cmd/ack` (alerts.downlink); a phone the OwnTracks app's on
`owntracks/<user>/<device>/cmd`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import msgspec
import numpy as np

from ingest import topics
from simulators.device import MOVE, SIGNIFICANT, Battery, DevicePlan, DeviceSim, Window
from simulators.messages import Message
from simulators.route import Track
from simulators.uplink import LinkPlan, fold, wire

MAX_BACKLOG = 20_000  # fixes a tag's flash keeps; the oldest go first


class Link(Protocol):
    def ready(self) -> bool: ...

    def publish(self, topic: str, payload: bytes) -> bool: ...


def retime(plan: DevicePlan, plan_start: int, wall_start: int, speedup: float = 1.0) -> DevicePlan:
    """`plan` moved so that its `plan_start` falls at `wall_start`, `speedup` times faster."""

    def t(ms: int) -> int:
        return wall_start + int((ms - plan_start) / speedup)

    def w(windows: tuple[Window, ...]) -> tuple[Window, ...]:
        return tuple((t(a), None if b is None else t(b)) for a, b in windows)

    track = plan.track
    battery = plan.battery
    return replace(
        plan,
        track=Track(
            ((track.t - plan_start) / speedup).astype(np.int64) + wall_start,
            track.lat,
            track.lon,
            track.env,
        ),
        battery=Battery(
            start_pct=battery.start_pct,
            drain_pct_h=battery.drain_pct_h * speedup,
            charging=tuple((t(a), t(b)) for a, b in battery.charging),
            charge_pct_h=battery.charge_pct_h * speedup,
            low_pct=battery.low_pct,
            off_pct=battery.off_pct,
        ),
        strap=tuple((t(ts), state) for ts, state in plan.strap),
        off=w(plan.off),
        silent=w(plan.silent),
        ignores=w(plan.ignores),
        answer_delay_s=plan.answer_delay_s / speedup,
        link=replace(plan.link, gaps=tuple((t(a), t(b)) for a, b in plan.link.gaps)),
    )


class LiveTag:
    def __init__(self, plan: DevicePlan, interval_s: float) -> None:
        """`plan` must already be on the wall clock (see `retime`)."""
        self.plan = plan
        self.sim = DeviceSim(plan, interval_s=interval_s)
        self.backlog: list[Message] = []
        self.encoder = msgspec.json.Encoder()
        self.sent = 0
        self.dropped = 0
        self.obeyed: set[str] = set()  # command ids: a redelivered command is not obeyed twice

    @property
    def command_topic(self) -> str:
        if self.plan.kind == "phone":
            return topics.owntracks(self.sim.user_device, topics.CMD)
        return topics.tag(self.plan.id, topics.CMD)

    def command(self, payload: bytes, link: Link) -> None:
        """Obey a command from the service; firmware ignores what it cannot parse."""
        try:
            body = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return
        if not isinstance(body, dict):
            return
        if self.plan.kind == "phone":
            self._owntracks_command(body)
            return
        command_id = str(body.get("id"))
        interval = body.get("interval_s")
        if command_id not in self.obeyed:
            self.obeyed.add(command_id)
            if body.get("type") == "set_interval" and isinstance(interval, int) and interval > 0:
                self.sim.set_interval(interval)
            elif body.get("type") == "locate":
                self.sim.report_location()
        # Acknowledged every time: the ack of the first delivery may be what was lost.
        ack = {"v": 1, "id": command_id, "type": "ack"}
        link.publish(topics.tag(self.plan.id, topics.CMD_ACK), self.encoder.encode(ack))

    def _owntracks_command(self, body: dict) -> None:
        if body.get("_type") != "cmd":
            return
        if body.get("action") == "reportLocation":
            self.sim.report_location()
        config = body.get("configuration")
        if body.get("action") == "setConfiguration" and isinstance(config, dict):
            mode, interval = config.get("monitoring"), config.get("moveModeLocatorInterval")
            if mode in (SIGNIFICANT, MOVE):
                self.sim.set_monitoring(mode, interval if isinstance(interval, int) else None)

    def _in_gap(self, now: int) -> bool:
        return any(a <= now < b for a, b in self.plan.link.gaps)

    def step(self, now: int, link: Link) -> None:
        """Emit what is due by `now` (epoch ms): publish it, or hold it."""
        self.backlog += self.sim.advance(now + 1)
        if len(self.backlog) > MAX_BACKLOG:
            self.dropped += len(self.backlog) - MAX_BACKLOG
            del self.backlog[: len(self.backlog) - MAX_BACKLOG]
        if not self.backlog or self._in_gap(now) or not link.ready():
            return
        groups = fold(self.backlog, LinkPlan().batch_max)
        self.backlog = []
        for k, group in enumerate(groups):
            topic, payload = wire(group)
            if not link.publish(topic, self.encoder.encode(payload)):
                # The link went away mid-upload: keep the rest for next time.
                self.backlog = [m for g in groups[k:] for m in g]
                return
            self.sent += 1
