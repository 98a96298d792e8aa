"""What a rule stage sees while judging one fix: the person's breach episodes and the
list its verdicts go to. Opening an episode is where "one breach, one alert" is kept, in
whatever order the evidence arrives."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import NamedTuple

from geofence.confirm import PENDING, Confirm
from geofence.judge import Judged
from geofence.model import DeviceEvent, Verdict
from geofence.policy import Policy
from geofence.state import DeviceState, EngineState, Episode, PersonState

_KEEP_EPISODES = 4


class EventStep(NamedTuple):
    """A device event (spec 4.1 `evt`, or an OwnTracks will) as its rule stages see it."""

    event: DeviceEvent
    device: DeviceState
    owner: str  # the supervisee wearing the device
    policy: Policy
    late: bool  # it reached us long after it happened


class StepContext:
    __slots__ = ("kinds", "late_track", "paired", "people", "verdicts")

    def __init__(
        self,
        state: EngineState,
        verdicts: list[Verdict],
        kinds: Mapping[str, str] | None = None,
        paired: Container[str] | None = None,
    ) -> None:
        self.people = state.people
        self.verdicts = verdicts
        self.late_track = False  # judging a late (out-of-order) track
        self.kinds: Mapping[str, str] = kinds or {}  # device → tag | phone (RuleSet.device_kind)
        # The supervisees wearing two or more devices (RuleSet.paired), the only ones whose
        # devices' recent fixes are worth keeping (geofence.stages.separation); None: all.
        self.paired = paired

    def person(self, supervisee: str) -> PersonState:
        person = self.people.get(supervisee)
        if person is None:
            person = self.people[supervisee] = PersonState()
        return person

    def open(
        self,
        rule: str,
        alert_type: str,
        supervisee: str,
        device: str,
        *,
        start: int,
        ts: int,
        late: bool,
        detail: dict | None = None,
        reopen_ms: int = 0,
        inside_before: int = -1,
    ) -> None:
        """A confirmed breach of `rule` that began at `start`, confirmed at `ts`, the device
        last seen on the right side at `inside_before`. Raises an alert unless it is an
        episode this person already has (another device saw it, a redelivered or late
        batch is showing it again, or late fixes show where an open episode began), or
        one that ended less than `reopen_ms` before it began (then that one reopens)."""
        person = self.person(supervisee)
        episodes = person.episodes.setdefault(rule, [])
        late = late or self.late_track
        hint = person.late_streaks.pop(rule, None)
        if hint is not None and inside_before < hint < start:
            start = hint  # late fixes already showed this breach beginning earlier
        for e in episodes:
            if e.start <= ts and (e.end is None or e.end + reopen_ms >= start):
                if e.end is not None and e.end < start:
                    # Out again soon after: the same breach, whichever device shows it now
                    # (that device's return then ends it).
                    e.end, e.device, e.late = None, device, late
                    self.verdicts.append(
                        Verdict("reopen", alert_type, supervisee, device, ts, e.key)
                    )
                elif start < e.start:
                    self._extend(e, alert_type, supervisee, device, start, ts)
                return
            if late and ts < e.start and start > e.inside_before:
                # Late fixes from before an episode, with no sign of the person back on the
                # right side in between: where that episode really began.
                self._extend(e, alert_type, supervisee, device, start, ts)
                return
        key = f"{rule}:{supervisee}:{start}"
        episodes.append(Episode(key, start, None, device, inside_before, late))
        episodes.sort(key=lambda e: e.start)
        del episodes[:-_KEEP_EPISODES]
        detail = {**(detail or {}), "start": start}
        self.verdicts.append(
            Verdict("raise", alert_type, supervisee, device, ts, key, late=late, detail=detail)
        )

    def confirmation(
        self, rule: str, alert_type: str, j: Judged, c: Confirm, event: str | None, detail: dict
    ) -> None:
        """What a position rule's confirmation (`event` from geofence.confirm on fix `j`)
        means for the person's episodes: a breach raised from where its streak began, one
        ended, or — on a late track — a streak that shows where one began."""
        fix = j.fix
        if event == "raise":
            self.open(
                rule,
                alert_type,
                j.supervisee,
                fix.device,
                start=c.start,
                ts=fix.ts,
                late=j.late,
                detail={"lat": fix.lat, "lon": fix.lon, "acc": fix.acc, **detail},
                reopen_ms=j.policy.reopen_s * 1000,
                inside_before=c.good_ts,
            )
        elif event == "clear":
            self.close(rule, alert_type, j.supervisee, fix.device, fix.ts)
        self.streak(rule, alert_type, j.supervisee, fix.device, c, fix.ts)

    def streak(
        self, rule: str, alert_type: str, supervisee: str, device: str, c: Confirm, ts: int
    ) -> None:
        """After a late track's step of `rule`: an unconfirmed streak of violating fixes
        that lies just before an episode (no sign of the person on the right side between)
        is where that episode began; with no such episode yet, it is kept as a hint for the
        live track's coming confirmation. Shuffled delivery splits one walk out between
        the tracks, so neither may see enough of it alone."""
        if not self.late_track:
            return
        person = self.person(supervisee)
        if c.phase != PENDING:
            person.late_streaks.pop(rule, None)
            return
        for e in person.episodes.get(rule, ()):
            if e.inside_before < c.start < e.start:
                person.late_streaks.pop(rule, None)
                self._extend(e, alert_type, supervisee, device, c.start, ts)
                return
        person.late_streaks[rule] = c.start

    def _extend(
        self, e: Episode, alert_type: str, supervisee: str, device: str, start: int, ts: int
    ) -> None:
        e.start = start
        self.verdicts.append(
            Verdict("extend", alert_type, supervisee, device, ts, e.key, True, {"start": start})
        )

    def close(self, rule: str, alert_type: str, supervisee: str, device: str, ts: int) -> None:
        """The device that opened the rule's current episode shows it has ended. A late
        track, whose fixes are older than what the live one has seen, ends only episodes it
        opened itself: the live track speaks for the present."""
        person = self.people.get(supervisee)
        if person is None:
            return
        for e in person.episodes.get(rule, ()):
            if (
                e.end is None
                and e.device == device
                and e.start <= ts
                and (e.late or not self.late_track)
            ):
                e.end = ts
                self.verdicts.append(Verdict("clear", alert_type, supervisee, device, ts, e.key))
                return
