"""What a check-in (定位签到, docs/rules.md "Check-ins") asks and what answers it, with no I/O:
the live duty (supervision.checkins) and `fencewatch replay` (supervision.checkin_book)
both decide through these functions, so a scored scenario judges the same rule the
service runs.

A check-in due at `due` is answered by a fix from one of the person's phones taken between
`due - ANSWER_SLACK` and the deadline, accurate to ANSWER_ACC_M, plus a passed face
verification when one is wanted. It is missed at the deadline otherwise, or at once on a
failed verification."""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from fencewatch.timefmt import iso_time

TYPE = "checkin_missed"
ANSWER_SLACK = timedelta(seconds=60)
ANSWER_ACC_M = 100.0
DEFAULT_DEADLINE_S = 900
# In a heightened period (重大节假日、会议期间) in force for the person, this many times the
# random check-ins.
HEIGHTENED_FACTOR = 2


class Schedule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    times: tuple[str, ...] = ()
    random_per_day: int = 0
    waking_from: str = "08:00"
    waking_to: str = "21:00"
    deadline_s: int = DEFAULT_DEADLINE_S
    face: bool = False


def hhmm(value: str) -> time:
    """A local time of day written HH:MM, or ValueError."""
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"times must be HH:MM, got {value!r}")
    return time(int(hours), int(minutes))


# Asked every minute for every person: each day's plan is drawn once.
@functools.lru_cache(maxsize=65_536)
def day_plan(
    supervisee: str,
    day: date,
    schedule: Schedule,
    tz: ZoneInfo,
    secret: str,
    heightened: bool = False,
) -> tuple[tuple[datetime, str], ...]:
    """(due time, fixed | random) of the person's check-ins on local `day`, in order;
    `heightened`: HEIGHTENED_FACTOR times the random ones, the usual ones among them."""
    fixed = {datetime.combine(day, hhmm(t), tz) for t in schedule.times}
    first = datetime.combine(day, hhmm(schedule.waking_from), tz)
    last = datetime.combine(day, hhmm(schedule.waking_to), tz)
    minutes = [
        first + timedelta(minutes=m) for m in range(int((last - first).total_seconds() // 60))
    ]
    free = [m for m in minutes if m not in fixed]
    seed = hmac.new(secret.encode(), f"{supervisee}:{day.isoformat()}".encode(), hashlib.sha256)
    # One shuffle a day, of which a heightened period takes more: the minutes already due
    # stay the same whichever the period says.
    random.Random(seed.digest()).shuffle(free)
    drawn = free[: schedule.random_per_day * (HEIGHTENED_FACTOR if heightened else 1)]
    return tuple(sorted([(t, "fixed") for t in fixed] + [(t, "random") for t in drawn]))


class Settled(NamedTuple):
    status: str | None  # answered | missed | None: not yet
    reason: str | None  # missed: no_fix, poor_fix, no_face or face_failed
    shown: Any  # the fix shown with it (the good one, else the first), or None


def settle(fixes: Sequence[Any], face: bool, face_verdict: str | None, closed: bool) -> Settled:
    """The check-in given `fixes` — the person's phone fixes taken in its window, in time
    order, each indexable as (device, ts, lat, lon, acc) — and the face verdict so far;
    `closed`: its deadline has passed."""
    good = next((f for f in fixes if f[4] is not None and f[4] <= ANSWER_ACC_M), None)
    shown = good if good is not None else (fixes[0] if fixes else None)
    if good is not None and (not face or face_verdict == "pass"):
        return Settled("answered", None, shown)
    if face_verdict == "fail":
        return Settled("missed", "face_failed", shown)
    if not closed:
        return Settled(None, None, shown)
    if good is not None:
        return Settled("missed", "no_face", shown)
    return Settled("missed", "poor_fix" if fixes else "no_fix", shown)


def alert_ts(reason: str, deadline: datetime, now: datetime) -> datetime:
    """When a missed check-in's alert happened: a failed verification when it came, any
    other miss at the deadline."""
    return min(now, deadline) if reason == "face_failed" else deadline


def detail(
    reason: str, due: datetime, deadline: datetime, face: bool, shown: Any
) -> dict[str, Any]:
    """A missed check-in's alert detail (the live service adds the check-in's id)."""
    out: dict[str, Any] = {
        "reason": reason,
        "due_at": iso_time(due),
        "deadline_at": iso_time(deadline),
        "face": face,
    }
    if shown is not None:
        out |= {"lat": shown[2], "lon": shown[3], "acc": shown[4]}
    return out
