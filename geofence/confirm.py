"""Confirmation with hysteresis, the heart of "few false alarms, no missed breach".

One `Confirm` per rule per device lane. Each judged fix arrives as a violation score:

    +2  certainly violating (whole error circle on the wrong side)
    +1  leaning violating   (centre on the wrong side, circle crosses)
     0  says nothing        (no position, jump, poor accuracy, rule not in force)
    -1  leaning compliant
    -2  certainly compliant

and, for a certain violation, its `depth`: how far its centre lies on the wrong side, in
error radii (1 = the circle just touches the border). Evidence weighs depth: a fix whose
whole circle is clear of the border by a wide margin is worth more than one barely out,
because honest GPS noise reaches a few radii at most, while a walker who has really left
is soon many radii out. So a breach is confirmed by

- `confirm_fixes` certain violations spanning `confirm_s`; or
- evidence (each fix's depth, capped at `evidence_cap`) reaching `confirm_evidence` over at
  least two fixes spanning `confirm_fast_s`: two fixes each three radii out; or
- for a device that reports rarely, two certain violations spanning `confirm_dwell_s`;

with no trustworthy compliant fix between them. It then stays a breach until `clear_fixes`
trustworthy compliant fixes in a row. Leaning fixes neither count nor reset, and neither
does a compliant fix whose circle is kilometres wide; but a leaning-compliant fix with a
small radius is trustworthy: it is what a person standing just inside the border produces,
and it must break a streak built from drift.
"""

from __future__ import annotations

import msgspec

from geofence.policy import Policy

CLEAR, PENDING, BREACH = 0, 1, 2


class Confirm(msgspec.Struct, gc=False):
    phase: int = CLEAR
    start: int = 0  # device time of the first violating fix of the streak
    count: int = 0  # certain violations in the streak
    good: int = 0  # trustworthy compliant fixes in a row
    evidence: float = 0.0  # depth-weighted certain violations in the streak
    good_ts: int = -1  # device time of the last trustworthy compliant fix


def step(
    c: Confirm, score: int, ts: int, radius: float, policy: Policy, depth: float = 1.0
) -> str | None:
    """Advance `c` by one fix; returns "raise", "clear" or None."""
    if score == 2:
        c.good = 0
        weight = min(max(depth, 1.0), policy.evidence_cap)
        if c.phase == CLEAR:
            c.phase, c.start, c.count, c.evidence = PENDING, ts, 1, weight
        elif c.phase == PENDING:
            c.count += 1
            c.evidence += weight
        span = ts - c.start
        if c.phase == PENDING and (
            (c.count >= policy.confirm_fixes and span >= policy.confirm_s * 1000)
            or (
                c.count >= 2
                and c.evidence >= policy.confirm_evidence
                and span >= policy.confirm_fast_s * 1000
            )
            or (c.count >= 2 and span >= policy.confirm_dwell_s * 1000)
        ):
            c.phase = BREACH
            return "raise"
        return None
    trustworthy = (score == -2 and radius <= policy.trust_max_m) or (
        score == -1 and radius <= policy.trust_acc_m
    )
    if not trustworthy:
        return None
    c.good_ts = max(c.good_ts, ts)
    c.good += 1
    if c.phase == PENDING:
        c.phase, c.count, c.evidence = CLEAR, 0, 0.0
    elif c.phase == BREACH and c.good >= policy.clear_fixes:
        c.phase, c.count, c.good, c.evidence = CLEAR, 0, 0, 0.0
        return "clear"
    return None


def settle(c: Confirm, start: int) -> str | None:
    """A breach proven by other means than fix counting (a dwell outside every allowed
    place, judged over many fixes): confirmed at once, begun at `start`."""
    if c.phase == BREACH:
        return None
    c.phase, c.start, c.good = BREACH, start, 0
    return "raise"


def end(c: Confirm) -> str | None:
    """The rule has stopped applying (a curfew window is over): whatever the fixes'
    accuracy, a breach ends and a streak is dropped."""
    was = c.phase
    c.phase, c.count, c.good, c.evidence = CLEAR, 0, 0, 0.0
    return "clear" if was == BREACH else None
