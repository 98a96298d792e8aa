"""Holding alerts under a suspension window (暂停告警, supervision.suspension).

An alert that opens while an approved suspension covers its type is recorded as ever but
held: alerts.record queues no webhook event for it and alerts.escalation neither routes nor
escalates it until `held_until`, when the window ends or is revoked. Then, unless another
suspension covers it, it is released: its webhook event goes out with the alert as it now
stands, and if it is still open the officer is told and escalation starts from then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fencewatch.timefmt import iso_time
from storage.db import Conn, Row
from storage.repo import suspensions as suspensions_repo
from supervision.suspension import NEVER_HELD, REASONS


async def find_hold(
    conn: Conn, supervisee: str, alert_type: str, at: datetime | None = None
) -> tuple[dict[str, Any], datetime] | None:
    """The hold an alert of `alert_type` gets at `at` (None: the transaction's time), as the
    alert records it, and when it ends; None when no suspension in force covers it."""
    return (await find_holds(conn, [(supervisee, alert_type)], at))[0]


async def find_holds(
    conn: Conn, asked: Sequence[tuple[str, str]], at: datetime | None = None
) -> list[tuple[dict[str, Any], datetime] | None]:
    """`find_hold` for each (supervisee, alert type) of `asked`, in one query at most."""
    found: list[tuple[dict[str, Any], datetime] | None] = [None] * len(asked)
    holdable = [i for i, (_, alert_type) in enumerate(asked) if alert_type not in NEVER_HELD]
    if not holdable:
        return found
    rows = await suspensions_repo.in_force_each(conn, [asked[i] for i in holdable], at)
    for i, row in zip(holdable, rows, strict=True):
        if row is not None:
            hold = {
                "suspension": row["id"],
                "reason": row["reason"],
                "reason_zh": REASONS[row["reason"]],
                "reason_text": row["reason_text"],
                "until": iso_time(row["ends_at"]),
            }
            found[i] = hold, row["ends_at"]
    return found


def is_held(alert: Row) -> bool:
    """Held: the alert has a hold and has not been routed (released) yet."""
    return alert.get("hold") is not None and not alert["routed"]
