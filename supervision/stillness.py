"""A phone that has not moved for longer than its owner's days ever keep it still (人机分离
signal (b), docs/rules.md "Check-ins"): said in a missed check-in's alert.

A *still spell* is a run of a phone's consecutive fixes each within its error circle of the
run's first fix (twice the larger accuracy, at least STILL_M): the same place, as far as
the fixes can tell. What is unusual is measured against the person's own history: for each
of the last HISTORY_DAYS days, the longest stretch of waking hours the phone spent in one
still spell; the person's usual is the USUAL_QUANTILE of those. Today's spell counts as
unusual when its waking part is longer than that usual and at least MIN_STILL. A person
who really stays home all day has days like that in their history, and so no note.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from geofence.geo import metres

STILL_M = 50.0
HISTORY_DAYS = 7  # as long as the fixes table keeps them (FENCEWATCH_ARCHIVE_AFTER_DAYS)
MIN_HISTORY_DAYS = 4  # fewer days than this say nothing about what is usual
USUAL_QUANTILE = 0.9
MIN_STILL = timedelta(hours=2)

Fix = tuple[datetime, float, float, float | None]  # ts, lat, lon, acc


def spells(fixes: Sequence[Fix]) -> list[tuple[datetime, datetime]]:
    """(first, last) fix time of each still spell, in time order."""
    out: list[tuple[datetime, datetime]] = []
    anchor: Fix | None = None
    last: datetime | None = None
    for fix in fixes:
        if anchor is not None and last is not None:
            reach = max(STILL_M, 2 * max(anchor[3] or 0.0, fix[3] or 0.0))
            if metres(anchor[1], anchor[2], fix[1], fix[2]) <= reach:
                last = fix[0]
                continue
            out.append((anchor[0], last))
        anchor, last = fix, fix[0]
    if anchor is not None and last is not None:
        out.append((anchor[0], last))
    return out


def _waking(day: date, tz: ZoneInfo, waking: tuple[time, time]) -> tuple[datetime, datetime]:
    return datetime.combine(day, waking[0], tz), datetime.combine(day, waking[1], tz)


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> timedelta:
    return max(timedelta(0), min(a[1], b[1]) - max(a[0], b[0]))


def unusual(
    fixes: Sequence[Fix], now: datetime, tz: ZoneInfo, waking: tuple[time, time]
) -> dict[str, object] | None:
    """What to say when the phone's current still spell (the one its latest fix belongs
    to) has lasted longer in today's waking hours than on USUAL_QUANTILE of the person's
    past days; None otherwise, or without enough history."""
    found = spells(fixes)
    if not found:
        return None
    today = now.astimezone(tz).date()
    current = found[-1]
    still = _overlap(current, _waking(today, tz, waking))
    days = [today - timedelta(days=n) for n in range(1, HISTORY_DAYS + 1)]
    seen = {f[0].astimezone(tz).date() for f in fixes}
    longest = [
        max((_overlap(s, _waking(day, tz, waking)) for s in found), default=timedelta(0))
        for day in days
        if day in seen
    ]
    if len(longest) < MIN_HISTORY_DAYS:
        return None
    usual = timedelta(
        seconds=float(np.quantile([d.total_seconds() for d in longest], USUAL_QUANTILE))
    )
    if still < MIN_STILL or still <= usual:
        return None
    return {
        "since": current[0].isoformat(),
        "still_s": int(still.total_seconds()),
        "usual_s": int(usual.total_seconds()),
        "days": len(longest),
    }
