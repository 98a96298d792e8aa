"""What a rule stage sees while judging one fix: the person's breach episodes and the
list its verdicts go to. Opening an episode is where "one breach, one alert" is kept."""

from __future__ import annotations

from geofence.model import Verdict
from geofence.state import EngineState, Episode, PersonState

_KEEP_EPISODES = 4


class StepContext:
    __slots__ = ("late_track", "people", "verdicts")

    def __init__(self, state: EngineState, verdicts: list[Verdict]) -> None:
        self.people = state.people
        self.verdicts = verdicts
        self.late_track = False  # judging a late (out-of-order) track

    def _person(self, supervisee: str) -> PersonState:
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
        start: int,
        ts: int,
        late: bool,
        detail: dict | None = None,
        reopen_ms: int = 0,
    ) -> None:
        """A confirmed breach of `rule` that began at `start`, confirmed at `ts`. Raises an
        alert unless this person already has an episode of the rule overlapping it (another
        device saw it, or a redelivered or late batch is showing it again), or one that ended
        less than `reopen_ms` before it began (then that episode is reopened)."""
        episodes = self._person(supervisee).episodes.setdefault(rule, [])
        for e in episodes:
            if e.start <= ts and (e.end is None or e.end + reopen_ms >= start):
                if e.end is not None and e.device == device:
                    e.end = None
                    self.verdicts.append(
                        Verdict("reopen", alert_type, supervisee, device, ts, e.key)
                    )
                return
        key = f"{rule}:{supervisee}:{start}"
        episodes.append(Episode(key, start, None, device))
        episodes.sort(key=lambda e: e.start)
        del episodes[:-_KEEP_EPISODES]
        self.verdicts.append(
            Verdict(
                "raise",
                alert_type,
                supervisee,
                device,
                ts,
                key,
                late=late or self.late_track,
                detail=detail or {},
            )
        )

    def close(self, rule: str, alert_type: str, supervisee: str, device: str, ts: int) -> None:
        """The device that opened the rule's current episode shows it has ended."""
        person = self.people.get(supervisee)
        if person is None:
            return
        for e in person.episodes.get(rule, ()):
            if e.end is None and e.device == device and e.start <= ts:
                e.end = ts
                self.verdicts.append(Verdict("clear", alert_type, supervisee, device, ts, e.key))
                return
