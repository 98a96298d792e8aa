"""Pursuit in generated scenarios (docs/rules.md, "Pursuit"): devices that obey the service.

A recorded scenario cannot gain fixes, but one being generated can. A device is run report
by report with the engine judging its messages as they reach the service, and it obeys what
the service would send it (alerts.pursuit): from a `pursue` a tag reports every 15 s and an
OwnTracks phone reports at once and then in move mode, until the device has stayed relaxed
for the hold. Pursuit looks at one device's own live track, so each device is run on its
own, in one pass; its messages then go through the network model like any others.

Time is the device's: its messages reach the service LATENCY_MS / 2 after they are taken —
or, taken in a coverage gap, when the gap ends — and a command reaches the device LATENCY_MS
/ 2 after the message that called for it, or when the device is next in coverage.
"""

from __future__ import annotations

import msgspec

from fencewatch.config import DEFAULT_PURSUIT_HOLD_S
from geofence.engine import Engine
from geofence.model import Verdict
from geofence.ruleset import RuleSet
from ingest.decode import decode_for
from simulators.device import MOVE, SIGNIFICANT, DevicePlan, DeviceSim
from simulators.messages import Message

LATENCY_MS = 3_000  # a message's way to the service, its commit, the command's way back
HOLD_MS = DEFAULT_PURSUIT_HOLD_S * 1000


class _Service:
    """What alerts.pursuit decides for one device, on the engine's verdicts."""

    def __init__(self) -> None:
        self.interval_s: int | None = None  # while pursued
        self.relaxed_at: int | None = None

    def hear(self, v: Verdict, at: int) -> str | None:
        """The command a verdict arriving at `at` calls for, if any."""
        if v.action == "pursue" and self.relaxed_at is not None:
            self.relaxed_at = None
        elif v.action == "pursue" and self.interval_s is None:
            self.interval_s = int(v.detail["interval_s"])
            return "pursue"
        elif v.action == "relax" and self.interval_s is not None and self.relaxed_at is None:
            self.relaxed_at = at
        return None

    def restore_due(self, now: int) -> int | None:
        """The pursuit's interval, if it ends by `now`."""
        if self.relaxed_at is None or self.relaxed_at + HOLD_MS > now:
            return None
        interval, self.interval_s, self.relaxed_at = self.interval_s, None, None
        return interval


def _obey(sim: DeviceSim, plan: DevicePlan, command: str, interval_s: int) -> None:
    if plan.owntracks is not None and command == "pursue":
        sim.report_location()
        sim.set_monitoring(MOVE, interval_s)
    elif plan.owntracks is not None:
        sim.set_monitoring(SIGNIFICANT)
    elif interval_s < plan.interval_s:  # a tag already this fast is left alone
        sim.set_interval(interval_s if command == "pursue" else plan.interval_s)


def obeying(plan: DevicePlan, rules: RuleSet, end: int) -> list[Message]:
    """Everything the device emits until `end`, obeying the service. A device that was never
    told anything emits exactly what it would have without pursuit; so does a phone on
    HTTP (Traccar Client: neither tag nor OwnTracks), which has no downlink."""
    sim = DeviceSim(plan)
    if plan.kind != "tag" and plan.owntracks is None:
        return sim.advance(end)

    def reachable(at: int) -> int:
        return next((b for a, b in plan.link.gaps if a <= at < b), at)

    engine, service = Engine(rules), _Service()
    encoder = msgspec.json.Encoder()
    out: list[Message] = []
    # (when it reaches the device, command, the pursuit's interval)
    on_the_way: list[tuple[int, str, int]] = []
    told = False
    now = plan.track.start
    while now < end:
        # One report at a time, stopping where a command lands.
        until = min([end, sim.next_report + 1, *(c[0] for c in on_the_way)])
        messages = sim.advance(until)
        out += messages
        for m in messages:
            arrival = reachable(m.ts) + LATENCY_MS // 2
            decoded = decode_for(rules, m.topic, encoder.encode(m.payload), arrival)
            for v in engine.process(decoded.fixes, decoded.events).verdicts:
                if service.hear(v, arrival) == "pursue" and service.interval_s is not None:
                    landing = reachable(arrival + LATENCY_MS // 2)
                    on_the_way.append((landing, "pursue", service.interval_s))
        if (interval := service.restore_due(until)) is not None:
            on_the_way.append((reachable(until + LATENCY_MS // 2), "restore", interval))
        for landed in sorted(c for c in on_the_way if c[0] <= until):
            on_the_way.remove(landed)
            _obey(sim, plan, landed[1], landed[2])
            told = True
        now = until
    # Run report by report, the GPS model draws its noise in another order.
    return out if told else DeviceSim(plan).advance(end)
