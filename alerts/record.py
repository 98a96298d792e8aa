"""Engine verdicts into the case record: one alert per breach episode (its key is unique),
every step in the alert's timeline, and a webhook event queued in the same transaction.

A new alert is stored unrouted (`alerts.routed` false); alerts.escalation tells the
officer, in its own transaction, as soon as this one commits."""

from __future__ import annotations

from typing import Any

import asyncpg

from alerts.outbox import enqueue
from fencewatch.metrics import ALERTS_RAISED
from fencewatch.timefmt import iso, iso_time, utc
from geofence.model import Verdict
from storage.db import Conn

# New alerts are announced here, at commit, so alerts.escalation routes them at once.
NOTIFY_CHANNEL = "fencewatch_alerting"

SEVERITY = {
    "sos": "critical",
    "strap_tamper": "critical",
    "exclusion_enter": "high",
    "jurisdiction_exit": "high",
    "curfew_breach": "high",
    "device_offline": "normal",
    "no_fix": "normal",
    "low_battery": "low",
    # The service could not judge this person's data (ingest/quarantine.py): they are not
    # monitored until the rules are corrected.
    "engine_fault": "high",
}


def alert_object(r: asyncpg.Record) -> dict[str, Any]:
    """The alert as the API and webhooks show it (spec 4.3)."""
    return {
        "id": r["id"],
        "type": r["type"],
        "supervisee": r["supervisee_id"],
        "device": r["device_id"],
        "ts": iso_time(r["ts"]),
        "status": r["status"],
        "late": r["late"],
        "active": r["active"],
        "severity": r["severity"],
        "escalation": r["escalation"],
        "raised_at": iso_time(r["raised_at"]),
        "cleared_at": iso_time(r["cleared_at"]) if r["cleared_at"] else None,
        "disposition": r["disposition"],
        "note": r["note"],
        "detail": r["detail"],
        # When the next escalation step is due while the alert stays open (alerts.escalation).
        "escalate_at": iso_time(at) if (at := r.get("escalate_at")) else None,
    }


async def apply(conn: Conn, verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Record verdicts inside the caller's transaction; returns the alerts that changed."""
    changed = []
    raised = False
    for v in verdicts:
        if v.action == "raise":
            row = await conn.fetchrow(
                "INSERT INTO alerts"
                " (key, type, supervisee_id, device_id, ts, late, severity, detail)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (key) DO NOTHING RETURNING *",
                v.key,
                v.type,
                v.supervisee,
                v.device,
                utc(v.ts),
                v.late,
                SEVERITY.get(v.type, "normal"),
                v.detail,
            )
            event = "raised"
        elif v.action == "reopen":
            row = await conn.fetchrow(
                "UPDATE alerts SET active = true, cleared_at = NULL WHERE key = $1 AND NOT active"
                " RETURNING *",
                v.key,
            )
            event = "reopened"
        elif v.action == "extend":
            # Late fixes show the breach began earlier: the same alert, its start moved back.
            row = await conn.fetchrow(
                "UPDATE alerts SET detail = detail || jsonb_build_object('start', $2::bigint)"
                " WHERE key = $1 AND coalesce((detail->>'start')::bigint, $2 + 1) > $2"
                " RETURNING *",
                v.key,
                v.detail["start"],
            )
            event = "extended"
        elif v.action == "clear":
            row = await conn.fetchrow(
                "UPDATE alerts SET active = false, cleared_at = $2 WHERE key = $1 AND active"
                " RETURNING *",
                v.key,
                utc(v.ts),
            )
            event = "cleared"
        else:
            continue  # not about an alert: pursuit (alerts.pursuit)
        if row is None:
            continue  # already recorded: a restart re-judging committed fixes
        await conn.execute(
            "INSERT INTO alert_events (alert_id, actor, action, detail)"
            " VALUES ($1, 'engine', $2, $3)",
            row["id"],
            event,
            {"ts": iso(v.ts), "late": v.late},
        )
        alert = alert_object(row)
        # One stream per person: a receiver stuck on one message holds back only that
        # person's later changes, which must stay in order.
        await enqueue(conn, "webhook", {"event": event, "alert": alert}, recipient=v.supervisee)
        if event == "raised":
            ALERTS_RAISED.labels(v.type).inc()
            raised = True
        changed.append({"event": event, "alert": alert})
    if raised:
        # Wakes the escalator (alerts.escalation) when this transaction commits: the new
        # alerts are on their way to the officers within moments.
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return changed
