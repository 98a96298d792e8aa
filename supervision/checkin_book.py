"""Check-ins over a recorded clock, for `fencewatch replay`: what the live duty
(supervision.checkins) does with its database, done in memory and decided by the same rule
(supervision.checkin_rules).

A roster entry's optional `checkins` (a schedule, as `PUT /supervisees/{id}/checkin-schedule`
takes it) makes the person's phones be asked at each due time the clock passes; the phones'
fixes, and the supervision app's face verifications (pings on topic `checkin`:
`{"supervisee", "due", "verdict": "pass"|"fail"}`), answer them; the clock passing a
deadline settles each. Random minutes are drawn with REPLAY_SECRET, so whoever writes a
scenario can foresee them, as nobody can foresee the service's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from fencewatch.timefmt import epoch_ms, iso_time, utc
from geofence.model import Fix, Roster, Verdict
from supervision import checkin_rules
from supervision.checkin_rules import ANSWER_SLACK, TYPE, Schedule, day_plan

REPLAY_SECRET = ""
TOPIC = "checkin"
_SLACK_MS = int(ANSWER_SLACK.total_seconds() * 1000)


class Verification(msgspec.Struct, frozen=True):
    """The supervision app's answer to one check-in, as a recorded ping's payload."""

    supervisee: str
    due: str  # ISO-8601, the check-in's due time
    verdict: str  # pass | fail


class _Open(NamedTuple):
    supervisee: str
    due: datetime
    deadline: datetime
    face: bool


Seen = tuple[str, int, float, float, float | None]  # device, ts, lat, lon, acc


class CheckinBook:
    def __init__(self, roster: Roster, schedules: Mapping[str, Schedule]) -> None:
        self.tz = ZoneInfo(roster.timezone)
        self.schedules: dict[str, Schedule] = {}
        self.owner: dict[str, str] = {}  # phone → supervisee
        for person in roster.supervisees:
            phones = [d.id for d in person.devices if d.kind == "phone"]
            schedule = schedules.get(person.id)
            # Only people with a phone are asked: a check-in is about the phone being with
            # its owner (as the live duty).
            if schedule is not None and phones:
                self.schedules[person.id] = schedule
                self.owner |= dict.fromkeys(phones, person.id)
        self.since: datetime | None = None  # the first clock reading: the service's start
        self.planned: datetime | None = None  # check-ins due up to here are open or settled
        self.open: list[_Open] = []
        self.fixes: dict[str, list[Seen]] = {}
        self.faces: dict[tuple[str, datetime], str] = {}

    def see(self, fix: Fix) -> None:
        person = self.owner.get(fix.device)
        if person is not None and fix.lat is not None and fix.lon is not None:
            self.fixes.setdefault(person, []).append(
                (fix.device, fix.ts, fix.lat, fix.lon, fix.acc)
            )

    def verify(self, payload: bytes, at: int) -> list[Verdict]:
        """A face verification; ValueError when it names no check-in asked so far."""
        v = msgspec.json.decode(payload, type=Verification)
        due = datetime.fromisoformat(v.due.replace("Z", "+00:00"))
        wanted = next((c for c in self.open if c.supervisee == v.supervisee and c.due == due), None)
        if wanted is None or v.verdict not in ("pass", "fail"):
            raise ValueError(f"no open check-in of {v.supervisee} due {v.due}, or a bad verdict")
        self.faces[(v.supervisee, due)] = v.verdict
        return self._settle(utc(at), only=wanted)

    def tick(self, now_ms: int) -> list[Verdict]:
        now = utc(now_ms)
        if self.since is None:
            self.since = self.planned = now
        assert self.planned is not None
        if now > self.planned:
            self._ask(self.planned, now)
            self.planned = now
        return self._settle(now)

    def _ask(self, after: datetime, until: datetime) -> None:
        """Open the check-ins due in (after, until]."""
        first, last = after.astimezone(self.tz).date(), until.astimezone(self.tz).date()
        for person, schedule in self.schedules.items():
            day = first
            while day <= last:
                for due, _ in day_plan(person, day, schedule, self.tz, REPLAY_SECRET):
                    if after < due <= until:
                        deadline = due + timedelta(seconds=schedule.deadline_s)
                        self.open.append(_Open(person, due, deadline, schedule.face))
                day += timedelta(days=1)

    def _settle(self, now: datetime, only: _Open | None = None) -> list[Verdict]:
        out: list[Verdict] = []
        for c in [only] if only is not None else list(self.open):
            lo, hi = epoch_ms(c.due) - _SLACK_MS, epoch_ms(c.deadline)
            fixes = sorted(
                (f for f in self.fixes.get(c.supervisee, ()) if lo <= f[1] <= hi),
                key=lambda f: f[1],
            )
            face = self.faces.get((c.supervisee, c.due))
            judged = checkin_rules.settle(fixes, c.face, face, now >= c.deadline)
            if judged.status is None:
                continue
            self.open.remove(c)
            if judged.status == "missed":
                assert judged.reason is not None
                out.append(self._alert(c, judged, now))
        self._forget()
        return out

    def _alert(self, c: _Open, judged: checkin_rules.Settled, now: datetime) -> Verdict:
        assert judged.reason is not None
        shown = judged.shown
        device = shown[0] if shown is not None else self._phone_of(c.supervisee)
        ts = epoch_ms(checkin_rules.alert_ts(judged.reason, c.deadline, now))
        detail = checkin_rules.detail(judged.reason, c.due, c.deadline, c.face, shown)
        key = f"{TYPE}:{c.supervisee}:{iso_time(c.due)}"
        return Verdict("raise", TYPE, c.supervisee, device, ts, key, False, detail)

    def _phone_of(self, supervisee: str) -> str:
        return min(d for d, p in self.owner.items() if p == supervisee)

    def _forget(self) -> None:
        """Drop fixes no open or future check-in can take: taken before the oldest open
        one's window, or before the planned horizon's."""
        if self.planned is None:
            return
        oldest = min([c.due for c in self.open] + [self.planned])
        cutoff = epoch_ms(oldest) - _SLACK_MS
        for person, fixes in self.fixes.items():
            if fixes and fixes[0][1] < cutoff:
                self.fixes[person] = [f for f in fixes if f[1] >= cutoff]
