"""supervision.stillness: a phone still for longer today than on the person's usual days
is noted (人机分离 signal b); a person whose days are like that anyway is not."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from supervision.stillness import Fix, spells, unusual
from tests.kit import LIANDU_SEAT, offset

TZ = ZoneInfo("Asia/Shanghai")
WAKING = (time(8, 0), time(21, 0))
NOW = datetime(2026, 12, 7, 14, 0, tzinfo=TZ)
HOME = LIANDU_SEAT
AWAY = offset(LIANDU_SEAT, 800, 0)


def days(out_every_h: float | None, today_still: bool) -> list[Fix]:
    """A fix every 10 minutes for a week up to NOW: out for 20 minutes every
    `out_every_h` hours (never, if None); today home since midnight if `today_still`."""
    fixes: list[Fix] = []
    t = NOW - timedelta(days=7)
    while t <= NOW:
        hours = (t - t.replace(hour=0, minute=0)).total_seconds() / 3600
        out = out_every_h is not None and hours % out_every_h >= out_every_h - 1 / 3
        if today_still and t.date() == NOW.date():
            out = False
        where = AWAY if out else HOME
        fixes.append((t, where[0], where[1], 15.0))
        t += timedelta(minutes=10)
    return fixes


def test_spells_are_runs_within_the_error_circles() -> None:
    t = NOW
    fixes: list[Fix] = [
        (t, *HOME, 10.0),
        (t + timedelta(minutes=10), *offset(HOME, 30, 0), 10.0),  # within 50 m: still
        (t + timedelta(minutes=20), *AWAY, 10.0),
        (t + timedelta(minutes=30), *offset(AWAY, 0, 300), 400.0),  # a coarse fix: still
    ]
    assert spells(fixes) == [
        (t, t + timedelta(minutes=10)),
        (t + timedelta(minutes=20), t + timedelta(minutes=30)),
    ]


def test_a_phone_still_all_morning_when_it_usually_moves_every_two_hours() -> None:
    note = unusual(days(2, today_still=True), NOW, TZ, WAKING)
    assert note is not None
    assert note["still_s"] == 6 * 3600 and int(str(note["usual_s"])) < 2 * 3600
    assert note["days"] == 7


def test_nothing_to_say_for_a_usual_day_or_a_homebody_or_without_history() -> None:
    assert unusual(days(2, today_still=False), NOW, TZ, WAKING) is None
    assert unusual(days(None, today_still=True), NOW, TZ, WAKING) is None  # always home
    two_days = [f for f in days(2, today_still=True) if f[0] > NOW - timedelta(days=2)]
    assert unusual(two_days, NOW, TZ, WAKING) is None
