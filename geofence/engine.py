"""The engine: rules + state + messages → verdicts, with no I/O.

The live service and `fencewatch replay` both feed it the same way — `process` with each
arriving batch, `tick` with the clock (wall clock live, the recorded arrival time in
replay) — so they run the very same code.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence

import msgspec

from geofence import pipeline
from geofence.context import EventStep, StepContext
from geofence.judge import Judged, judge
from geofence.model import DeviceEvent, Fix, Quality, Verdict
from geofence.ruleset import RuleSet
from geofence.state import DeviceState, EngineState, Track

# A late track is dropped once the live track is this far past it.
_LATE_TRACK_TTL_MS = 3_600_000
# At most this many of its fixes are kept to judge it again when an older one comes.
_LATE_FIXES_KEPT = 512
_ZONE_STATE = {2: "in", 1: "uncertain", -1: "uncertain", -2: "out"}


def _order(fix: Fix) -> tuple[int, int]:
    return fix.ts, fix.seq


class Outcome(msgspec.Struct):
    judged: list[Judged]
    verdicts: list[Verdict]


def zone_state(j: Judged) -> str | None:
    """in / out / uncertain against the allowed area, as stored with the fix."""
    return _ZONE_STATE.get(j.allowed)


class Engine:
    def __init__(self, rules: RuleSet, state: EngineState | None = None) -> None:
        self.rules = rules
        self.state = state or EngineState()
        self._deadlines: list[tuple[int, str]] = []
        self._armed: set[str] = set()
        # A restored state's keys are the snapshot's strings: the roster's instead (5.7 MB
        # at 100,000 tags).
        self.state.devices = {rules.device_id(d): dev for d, dev in self.state.devices.items()}
        for device, dev in self.state.devices.items():
            if not dev.offline and device in rules.device_owner:
                self._arm(device, dev)

    # -- input -----------------------------------------------------------------------------

    def process(self, fixes: Sequence[Fix], events: Sequence[DeviceEvent] = ()) -> Outcome:
        """Judge a batch that arrived together. Every device must be on the roster (ingest
        rejects the rest). Fixes are judged per device in device-time order."""
        verdicts: list[Verdict] = []
        ctx = self._context(verdicts)
        for fix in fixes:
            self._arrived(ctx, fix.device, fix.at)
        for event in events:
            self._arrived(ctx, event.device, event.at)
        judged = judge(self.rules, list(fixes))
        for j in sorted(judged, key=lambda j: (j.fix.device, j.fix.ts, j.fix.seq)):
            self._judge_one(ctx, j)
        for event in events:
            self._event(ctx, event)
        return Outcome(judged, verdicts)

    def tick(self, now: int) -> list[Verdict]:
        """Fire the watchdogs whose deadline `now` has passed (device_offline)."""
        verdicts: list[Verdict] = []
        ctx = self._context(verdicts)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, device = heapq.heappop(self._deadlines)
            dev = self.state.devices.get(device)
            owner = self.rules.device_owner.get(device)
            if dev is None or owner is None:
                self._armed.discard(device)
                continue
            due, cause = self._due(device, dev)
            if due > now:
                heapq.heappush(self._deadlines, (due, device))
                continue
            self._armed.discard(device)
            pipeline.silent(ctx, dev, owner, device, due, cause)
        return verdicts

    def watchdogs_due(self, now: int) -> list[tuple[int, str]]:
        """The (deadline, device) entries `tick(now)` would take up, found without walking
        the rest of the heap (geofence.guard redoes a failed tick one watchdog short)."""
        heap, found, todo = self._deadlines, [], [0]
        while todo:
            i = todo.pop()
            if i < len(heap) and heap[i][0] <= now:
                found.append(heap[i])
                todo += (2 * i + 1, 2 * i + 2)
        return found

    def watchdogs_waiting(self) -> set[str]:
        return {device for _, device in self._deadlines}

    def rearm(self, entries: Sequence[tuple[int, str]]) -> None:
        """Put watchdog entries back as they were (after a failed tick was undone)."""
        for entry in entries:
            heapq.heappush(self._deadlines, entry)
            self._armed.add(entry[1])

    def disarm(self, device: str) -> None:
        """No watchdog for `device` until its next message arms one."""
        self._armed.discard(device)

    def forget(self, devices: Sequence[str]) -> None:
        """Drop devices that another engine now judges (worn by a person of another shard)."""
        for device in devices:
            self.state.devices.pop(device, None)
            self._armed.discard(device)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.state)

    @classmethod
    def restore(cls, rules: RuleSet, blob: bytes) -> Engine:
        return cls(rules, msgspec.msgpack.decode(blob, type=EngineState))

    # -- internals -------------------------------------------------------------------------

    def _context(self, verdicts: list[Verdict]) -> StepContext:
        return StepContext(self.state, verdicts, self.rules.device_kind, self.rules.paired)

    def _device(self, device: str) -> DeviceState:
        dev = self.state.devices.get(device)
        if dev is None:
            dev = self.state.devices[device] = DeviceState()
        return dev

    def _due(self, device: str, dev: DeviceState) -> tuple[int, str]:
        return pipeline.silence_deadline(dev, self.rules.policy(device, dev.last_at))

    def _arm(self, device: str, dev: DeviceState) -> None:
        if device not in self._armed:
            self._armed.add(device)
            heapq.heappush(self._deadlines, (self._due(device, dev)[0], device))

    def _arrived(self, ctx: StepContext, device: str, at: int) -> None:
        dev = self.state.devices.get(device)
        if dev is None:
            # Kept, and armed, under the roster's string for it, not the message's.
            device = self.rules.device_id(device)
            dev = self.state.devices[device] = DeviceState()
        pipeline.heard_from(ctx, dev, self.rules.device_owner[device], device, at)
        self._arm(device, dev)

    def _judge_one(self, ctx: StepContext, j: Judged) -> None:
        fix = j.fix
        dev = self._device(fix.device)
        live = dev.live
        ctx.late_track = False
        newer = pipeline.newer(live, fix.seq, fix.ts)
        if pipeline.redelivered(live, fix.seq, fix.ts):
            j.flags |= Quality.DUPLICATE
        elif newer:
            live.last_ts = fix.ts
            if dev.late is not None and fix.ts - dev.late.last_ts > _LATE_TRACK_TTL_MS:
                dev.late, dev.late_fixes = None, None
        else:
            # Older than what this device's live track has judged: a buffered batch that
            # came after live fixes resumed, or a shuffled redelivery. Judged in device-time
            # order on a late track of its own.
            j.flags |= Quality.OUT_OF_ORDER
            self._judge_late(ctx, dev, j)
            self._reconcile(ctx, dev, fix.device)
            return
        pipeline.run(ctx, live, j)
        if dev.late_open:
            self._reconcile(ctx, dev, fix.device)

    def _reconcile(self, ctx: StepContext, dev: DeviceState, device: str) -> None:
        """End the episodes a late track opened once the live track shows the person back
        after everything the late track has seen: the live track speaks for the present."""
        ctx.late_track = False
        owner = self.rules.device_owner[device]
        person = self.state.people.get(owner)
        dev.late_open = False
        if person is None:
            return
        newest_late = dev.late.last_ts if dev.late is not None else -1
        for rule, episodes in person.episodes.items():
            for e in episodes:
                if e.end is not None or not e.late or e.device != device:
                    continue
                since = pipeline.back_since(dev.live, rule)
                if since is not None and since > max(e.start, newest_late):
                    ctx.close(rule, rule.partition(":")[0], owner, device, since)
                else:
                    dev.late_open = True

    def _judge_late(self, ctx: StepContext, dev: DeviceState, j: Judged) -> None:
        ctx.late_track = True
        fix = j.fix
        fixes = dev.late_fixes = dev.late_fixes or []
        if dev.late is not None and fixes and _order(fix) > _order(fixes[-1]):
            fixes.append(fix)
            dev.late.last_ts = fix.ts
            pipeline.run(ctx, dev.late, j)
        else:
            # Older still than the late track's newest: judge its fixes again, in order, with
            # this one in its place (episodes already raised are found again, not re-raised).
            at = bisect.bisect_left(fixes, (fix.ts, fix.seq), key=_order)
            if at < len(fixes) and _order(fixes[at]) == (fix.ts, fix.seq):
                j.flags |= Quality.DUPLICATE
                return
            fixes.insert(at, fix)
            dev.late = Track()
            rejudged = judge(self.rules, fixes)
            rejudged[at] = j
            for r in rejudged:
                r.flags |= Quality.OUT_OF_ORDER
                dev.late.last_ts = r.fix.ts
                pipeline.run(ctx, dev.late, r)
        del fixes[:-_LATE_FIXES_KEPT]

    def _event(self, ctx: StepContext, e: DeviceEvent) -> None:
        dev = self._device(e.device)
        policy = self.rules.policy(e.device, e.ts)
        late = e.at - e.ts > policy.late_after_s * 1000
        step = EventStep(e, dev, self.rules.device_owner[e.device], policy, late)
        if pipeline.run_event(ctx, step):
            self._armed.discard(e.device)
            self._arm(e.device, dev)
