"""Suspension windows (暂停告警): while a person cannot comply for a stated reason — in
hospital (住院), detained (羁押), at a court appearance (出庭) — their alerts of the named
types are held instead of delivered, until a stated end.

A suspension is asked for by an officer and has no effect until a supervisor other than the
one who asked approves it; it is bounded (`MAX_DAYS`, a configurable default: a longer
absence is a matter for the supervision decision itself, not for quieting alerts) and can be
revoked early. Nothing here changes what the engine judges: held alerts are recorded all the
same (alerts.record, alerts.escalation).
"""

from __future__ import annotations

from supervision.leave import DAY_MS, Problem

REASONS = {"hospital": "住院", "detention": "羁押", "court": "出庭", "other": "其他"}
MAX_DAYS = 30
# An engine fault says the service cannot judge the person: the centre must hear of it
# whatever the person is doing, so it is never held.
NEVER_HELD = frozenset({"engine_fault"})


def check_window(start: int, end: int, *, now: int, max_days: int = MAX_DAYS) -> list[Problem]:
    """Why a window (epoch ms) cannot be a suspension: it must end after it starts and after
    `now`, and last at most `max_days`."""
    problems = []
    if end <= start:
        problems.append(
            Problem("order", "the suspension ends before it starts", "结束时间早于开始时间")
        )
    if end <= now:
        problems.append(Problem("past", "the suspension has already ended", "结束时间已过"))
    if end - start > max_days * DAY_MS:
        problems.append(
            Problem(
                "too_long",
                f"a suspension lasts at most {max_days} days",
                f"暂停告警最长不超过{max_days}天",
            )
        )
    return problems
