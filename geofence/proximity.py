"""People near people: the decision, with no I/O.

Two positions, each with its error circle and device time, are *surely within* a distance
when even their far edges are (centres apart + both radii + how far either may have moved
between the two fix times ≤ distance), *surely apart* when even their near edges are
beyond it, and *unknown* otherwise — and unknown whenever either fix is coarse or the two
were taken too far apart in time to compare. A run of "surely within" becomes an alert only
when it lasts `confirm_s` over at least `confirm_count` comparisons, with nothing surely
apart in between (geofence.confirm's rule, for two people instead of a person and a line);
it ends after `clear_count` surely-apart comparisons in a row spanning `clear_s`, each of
fixes newer than the last's; one that comes back within `reopen_s` is the same episode.

Pure, so the live proximity check and `fencewatch replay` (geofence.together) run the very
same decision; docs/rules.md gives the reasoning behind the defaults.
"""

from __future__ import annotations

import msgspec

from geofence.geo import metres
from geofence.judge import Judged, error_radius
from geofence.model import Fix, Protection, Quality
from geofence.policy import DEFAULT_BOOK

WITHIN, UNKNOWN, APART = 1, 0, -1
CLEAR, PENDING, CLOSE = 0, 1, 2

# A fix that says nothing about where its wearer is, for these reasons, is never compared.
UNTRUSTED = (
    Quality.NO_FIX
    | Quality.ACC_POOR
    | Quality.ACC_UNKNOWN
    | Quality.JUMP
    | Quality.DRIFT
    | Quality.DUPLICATE
    | Quality.OUT_OF_ORDER
    | Quality.LATE
)


class Sighting(msgspec.Struct, frozen=True, gc=False):
    """The latest trusted position of one person: what is compared."""

    person: str
    device: str
    lat: float
    lon: float
    radius: float  # effective error radius, metres (geofence.judge.error_radius)
    ts: int  # device time, epoch ms
    speed: float = 0.0  # reported speed, m/s (0 when not reported)


class Closeness(msgspec.Struct, frozen=True):
    """Thresholds of the proximity decision (docs/rules.md)."""

    # Two fixes taken further apart in time than this are not compared: one of them is
    # stale, and where its wearer is now is unknown.
    fresh_s: int = 120
    # A fix whose error radius is wider than this is too coarse to place anyone within a
    # few hundred metres of anyone (a phone's network fix, a tag indoors on cell).
    max_radius_m: float = 100.0
    # Between two fix times either person may have moved this fast (or as fast as they
    # said they were moving).
    move_mps: float = 1.5
    # A run of "surely within" raises after this long and this many comparisons…
    confirm_s: int = 300
    confirm_count: int = 3
    # …unless it pauses (nothing known) this long: then it starts again.
    gap_s: int = 300
    # Hysteresis: this many surely-apart comparisons in a row, spanning this long, end
    # it, each made of two fixes newer than those of the one before: one stray fix is
    # compared with every fix the other sends while it is the latest, and multipath can
    # put two or three fixes in a row at one wrong place (geofence.stages.jump).
    clear_count: int = 2
    clear_s: int = 180
    # A run that comes back this soon after it ended is the same episode: its alert is
    # reopened, not raised again.
    reopen_s: int = 300


DEFAULT = Closeness()


def sighting(j: Judged) -> Sighting | None:
    """A judged fix as a sighting, or None when it is not trusted to place its wearer."""
    fix = j.fix
    if j.flags & UNTRUSTED or fix.lat is None or fix.lon is None:
        return None
    return Sighting(
        j.supervisee, fix.device, fix.lat, fix.lon, j.radius, fix.ts, float(fix.spd or 0.0)
    )


_PHONE = DEFAULT_BOOK.for_device("normal", "phone")


def protected_sighting(fix: Fix, protection: Protection) -> Sighting | None:
    """A protected person's phone's fix as a sighting, judged as a supervisee's phone's
    would be; None when it places nobody (no position, accuracy unknown or too poor, or
    buffered)."""
    if fix.lat is None or fix.lon is None or fix.at - fix.ts > _PHONE.late_after_s * 1000:
        return None
    radius, flags = error_radius(fix, _PHONE)
    if flags:
        return None
    return Sighting(
        protection.person, fix.device, fix.lat, fix.lon, radius, fix.ts, float(fix.spd or 0.0)
    )


def relation(a: Sighting, b: Sighting, distance_m: float, c: Closeness = DEFAULT) -> int:
    """WITHIN, APART or UNKNOWN: whether `a` and `b` are surely within `distance_m`."""
    if a.radius > c.max_radius_m or b.radius > c.max_radius_m:
        return UNKNOWN
    skew_s = abs(a.ts - b.ts) / 1000
    if skew_s > c.fresh_s:
        return UNKNOWN
    d = metres(a.lat, a.lon, b.lat, b.lon)
    slack = a.radius + b.radius + max(c.move_mps, a.speed, b.speed) * skew_s
    if d + slack <= distance_m:
        return WITHIN
    if d - slack > distance_m:
        return APART
    return UNKNOWN


class Run(msgspec.Struct):
    """One pair's confirmation state."""

    phase: int = CLEAR
    start: int = 0  # device time of the first "surely within" of the run
    last: int = 0  # device time of its latest
    count: int = 0
    apart: int = 0  # surely-apart comparisons in a row
    apart_last: int = 0  # device time of the newer fix of the last of them
    apart_first: int = 0  # …and of the first
    episode: int = -1  # start of the episode whose alert the run raised (its key)
    ended: int = -1  # device time it last ended


def step(r: Run, rel: int, ts: int, c: Closeness = DEFAULT, older: int | None = None) -> str | None:
    """Advance `r` by one comparison of a fix at device time `ts` with one at `older`
    (default: the same); returns "raise", "reopen" (the episode that ended just before,
    back), "clear" or None. Unknown comparisons neither count nor reset."""
    if rel == WITHIN:
        r.apart = 0
        if r.phase == PENDING and ts - r.last > c.gap_s * 1000:
            r.phase = CLEAR
        if r.phase == CLEAR:
            r.phase, r.start, r.count = PENDING, ts, 0
        r.last = max(r.last, ts)
        r.count += 1
        if r.phase == PENDING and r.count >= c.confirm_count and ts - r.start >= c.confirm_s * 1000:
            r.phase = CLOSE
            if r.episode >= 0 and r.start - r.ended <= c.reopen_s * 1000:
                return "reopen"
            r.episode = r.start
            return "raise"
        return None
    if rel == APART:
        if r.apart and (ts if older is None else older) <= r.apart_last:
            return None  # a fix already counted apart, compared again
        if r.apart == 0:
            r.apart_first = ts if older is None else min(ts, older)
        r.apart += 1
        r.apart_last = ts
        if r.phase == PENDING:
            r.phase, r.count = CLEAR, 0
        elif (
            r.phase == CLOSE and r.apart >= c.clear_count and ts - r.apart_first >= c.clear_s * 1000
        ):
            r.phase, r.count, r.ended = CLEAR, 0, ts
            return "clear"
    return None
