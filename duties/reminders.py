"""Reminders (防止超期解矫): before a monitoring order or a supervision term ends, and when
a leave's return is due or overdue — to the responsible officer (or the station if the
person has none), by SMS and e-mail where configured, and always in `reminders`.

Each reminder has a stage — `7d:2025-12-01` is "7 days before the order ending on
2025-12-01" — and is sent once per (kind, object, stage) (a unique key), so the hourly
duty may look as often as it likes. When several stages are due at once (the service was
down), only the most urgent one is sent. A renewal moves the end date, which starts the
stages again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts import routing, templates
from alerts.outbox import enqueue
from alerts.routing import Channels
from storage.db import Conn

# The order's end after its last renewal (as storage.repo.orders reads it).
_ORDER_END = "COALESCE((o.renewals -> -1 ->> 'until')::date, o.ends_on)"
_LEAVE_DUE_WITHIN = timedelta(hours=24)
_OVERDUE_LOOKBACK = timedelta(days=7)


def _stage(days_left: int, stages: Sequence[int]) -> int | None:
    """The most urgent stage reached: the smallest lead time not less than `days_left`."""
    reached = [d for d in stages if days_left <= d]
    return min(reached) if reached and days_left >= 0 else None


async def _remind(
    conn: Conn,
    *,
    kind: str,
    ref: str,
    stage: str,
    supervisee: str,
    name: str,
    due_on: date,
    days: int,
    channels: Channels,
) -> bool:
    text = templates.reminder_text(
        kind, name=name, supervisee=supervisee, due=due_on.isoformat(), days=days
    )
    new = await conn.fetchval(
        "INSERT INTO reminders (kind, ref, stage, supervisee_id, due_on, text)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, ref, stage) DO NOTHING"
        " RETURNING true",
        kind,
        ref,
        stage,
        supervisee,
        due_on,
        text,
    )
    if not new:
        return False
    _, people = await routing.first_contacts(conn, supervisee)
    payload: dict[str, Any] = {
        "kind": "reminder",
        "reminder": kind,
        "supervisee": supervisee,
        "throttle": False,
        "text": text,
        "subject": f"提醒：{name or supervisee}",
    }
    seen: set[str] = set()
    for contact in people:
        for channel, address, enabled in (
            (routing.SMS, contact.phone, channels.sms),
            (routing.EMAIL, contact.email, channels.email),
        ):
            if enabled and address and address not in seen:
                seen.add(address)
                await enqueue(
                    conn,
                    channel,
                    {**payload, "to": contact.who},
                    recipient=address,
                )
    return True


async def send_due(
    conn: Conn,
    *,
    now: datetime,
    timezone: str,
    order_days: Sequence[int],
    term_days: Sequence[int],
    channels: Channels,
) -> dict[str, Any]:
    """Send every reminder due at `now`; returns how many of each kind were sent."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    sent = {"order_end": 0, "term_end": 0, "leave_return": 0, "leave_overdue": 0}

    ends = (
        (
            "order_end",
            order_days,
            f"SELECT o.id::text AS ref, o.supervisee_id, s.name, {_ORDER_END} AS ends"
            " FROM monitoring_orders o JOIN supervisees s ON s.id = o.supervisee_id"
            f" WHERE o.ended_at IS NULL AND s.status = 'active' AND {_ORDER_END} BETWEEN $1 AND $2",
        ),
        (
            "term_end",
            term_days,
            "SELECT id AS ref, id AS supervisee_id, name, term_end AS ends FROM supervisees"
            " WHERE status = 'active' AND term_end BETWEEN $1 AND $2",
        ),
    )
    for kind, stages, query in ends:
        horizon = today + timedelta(days=max(stages, default=0))
        for r in await conn.fetch(query, today, horizon):
            days = (r["ends"] - today).days
            stage = _stage(days, stages)
            if stage is not None and await _remind(
                conn,
                kind=kind,
                ref=r["ref"],
                stage=f"{stage}d:{r['ends']}",
                supervisee=r["supervisee_id"],
                name=r["name"],
                due_on=r["ends"],
                days=days,
                channels=channels,
            ):
                sent[kind] += 1

    tz = ZoneInfo(timezone)
    for r in await conn.fetch(
        "SELECT l.id, l.supervisee_id, s.name, l.ends_at FROM leaves l"
        " JOIN supervisees s ON s.id = l.supervisee_id"
        " WHERE l.status = 'approved' AND l.kind = 'leave' AND l.returned_at IS NULL"
        " AND s.status = 'active' AND l.ends_at > $1 AND l.ends_at <= $2",
        now - _OVERDUE_LOOKBACK,
        now + _LEAVE_DUE_WITHIN,
    ):
        ends = r["ends_at"].astimezone(tz)
        overdue = r["ends_at"] <= now
        kind = "leave_overdue" if overdue else "leave_return"
        if await _remind(
            conn,
            kind=kind,
            ref=r["id"],
            stage=f"{'overdue' if overdue else 'due'}:{ends.isoformat()}",
            supervisee=r["supervisee_id"],
            name=r["name"],
            due_on=ends.date(),
            days=max(0, (ends.date() - today).days),
            channels=channels,
        ):
            sent[kind] += 1
    return sent
