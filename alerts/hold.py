"""Holding alerts under a suspension window (暂停告警, supervision.suspension).

An alert that opens while an approved suspension covers its type is recorded as ever but
held: alerts.record queues no webhook event for it and alerts.escalation neither routes nor
escalates it until `held_until`, when the window ends or is revoked. Then, unless another
suspension covers it, it is released: its webhook event goes out with the alert as it now
stands, and if it is still open the officer is told and escalation starts from then.
"""

from __future__ import annotations

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
    if alert_type in NEVER_HELD:
        return None
    row = await suspensions_repo.in_force(conn, supervisee, alert_type, at)
    if row is None:
        return None
    hold = {
        "suspension": row["id"],
        "reason": row["reason"],
        "reason_zh": REASONS[row["reason"]],
        "reason_text": row["reason_text"],
        "until": iso_time(row["ends_at"]),
    }
    return hold, row["ends_at"]


def is_held(alert: Row) -> bool:
    """Held: the alert has a hold and has not been routed (released) yet."""
    return alert.get("hold") is not None and not alert["routed"]
