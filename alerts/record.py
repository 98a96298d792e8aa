"""The alert record: one alert per breach episode (its key is unique), every step of it in
the alert's timeline (`alert_events`, written only by `append_event`), and a webhook event
queued with each change in the same transaction.

Two parties change an alert. The engine's verdicts (`apply`) raise, clear, reopen and
extend it, and add to a gathering those who join it: the condition (`active`). People
(`take_step`) acknowledge (签收) and resolve (处置) it: the case (`status`). A new alert
is stored unrouted (`alerts.routed` false); alerts.escalation tells the officer, in its
own transaction, as soon as this one commits.

The two meet where a breach is still going on. Resolving a breach whose episode is active
is refused unless the caller says it knows (`while_active`), and a false alarm then needs a
reason (`FALSE_ALARM_REASONS`): the service still sees the person outside. Such an alert is
still in breach (仍在越界) until the engine ends the episode — the console keeps it in the
queue and on the map. If the breach comes back after its alert was resolved (`reopen`),
the case reopens: the alert is open again and the officer is told again, one breach still
one alert.

Reads that name a caller's `offices` (storage.repo's convention) see only the alerts of
people in those offices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from alerts.hold import find_holds, is_held
from alerts.outbox import enqueue_each
from alerts.webhook import CHANNEL as WEBHOOK
from fencewatch.metrics import ALERTS_RAISED
from fencewatch.timefmt import iso, iso_time, utc
from geofence.model import GEOFENCE_RULES, Verdict
from storage.db import Conn, Row
from storage.repo import IN_SCOPE, Offices

# Who holds and releases alerts in their timeline (alerts.hold, alerts.escalation).
HOLD_ACTOR = "scheduler"

# New alerts are announced here, at commit, so alerts.escalation routes them at once.
NOTIFY_CHANNEL = "fencewatch_alerting"

SEVERITY = {
    "sos": "critical",
    "strap_tamper": "critical",
    "exclusion_enter": "high",
    "jurisdiction_exit": "high",
    "curfew_breach": "high",
    "contact": "high",  # a no-contact order broken (禁止接触)
    "gathering": "high",
    "device_offline": "normal",
    "no_fix": "normal",
    "low_battery": "low",
    # 人机分离: the phone is not with the person (geofence.stages.separation).
    "device_separation": "high",
    # A check-in (定位签到) not answered in time (supervision.checkins).
    "checkin_missed": "normal",
    # The service could not judge this person's data (ingest/quarantine.py): they are not
    # monitored until the rules are corrected.
    "engine_fault": "high",
}


# A raise, one row of unnest `v` per verdict in their order. The engine names a zone by id
# (an exclusion zone's alert); the record adds its name as it stood when the alert was
# raised, which is what the queue, SMS and the case file show.
_RAISE = """
INSERT INTO alerts (key, type, supervisee_id, device_id, ts, late, severity, detail, hold,
    held_until)
SELECT v.key, v.type, v.supervisee, v.device, v.ts, v.late, v.severity,
    v.detail || COALESCE((SELECT jsonb_build_object('zone_name', name) FROM zones
        WHERE id = v.detail->>'zone' AND name <> ''), '{}'::jsonb),
    v.hold, v.held_until
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::boolean[],
    $7::text[], $8::jsonb[], $9::jsonb[], $10::timestamptz[]) WITH ORDINALITY
    AS v(key, type, supervisee, device, ts, late, severity, detail, hold, held_until, i)
ORDER BY v.i
ON CONFLICT (key) DO NOTHING RETURNING *
"""


PROTECTED_EVIDENCE = "protected"  # detail key: where a protected person was (geofence.together)


def alert_object(r: Row, *, protected: bool = False) -> dict[str, Any]:
    """The alert as the API and webhooks show it (spec 4.3). Where a protected person was
    is left out unless `protected`: only the alert's own audited read shows it
    (docs/security.md), never a list, the live feed or a webhook."""
    detail = r["detail"]
    if not protected and isinstance(detail, dict) and PROTECTED_EVIDENCE in detail:
        detail = {k: v for k, v in detail.items() if k != PROTECTED_EVIDENCE}
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
        "reason": r["reason"],
        "note": r["note"],
        "detail": detail,
        # When the next escalation step is due while the alert stays open (alerts.escalation).
        "escalate_at": iso_time(at) if (at := r.get("escalate_at")) else None,
        # The suspension window holding it (alerts.hold); null once released or never held.
        "held": r["hold"] if is_held(r) else None,
    }


# --- the engine's verdicts: raise, clear, reopen, extend, join -------------------------


async def apply(conn: Conn, verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Record verdicts inside the caller's transaction; returns the alerts that changed.
    A run of raises is one statement, and the timeline entries and webhook events of all
    the changes one each: a batch raising alerts commits almost as fast as one raising
    none."""
    done: list[tuple[str, Verdict, Row | None]] = []
    i = 0
    while i < len(verdicts):
        v = verdicts[i]
        if v.action == "raise":
            # Up to the next verdict of another kind, or of a key already in the run: the
            # rows are then the ones verdict-by-verdict statements would have written.
            j, keys = i, set()
            while j < len(verdicts) and verdicts[j].action == "raise":
                if verdicts[j].key in keys:
                    break
                keys.add(verdicts[j].key)
                j += 1
            raised = await _raise(conn, verdicts[i:j])
            done.extend(("raised", r, row) for r, row in zip(verdicts[i:j], raised, strict=True))
            i = j
            continue
        i += 1
        if v.action == "reopen":
            done.append(("reopened", v, await conn.fetchrow(_REOPEN, v.key, utc(v.ts))))
        elif v.action == "extend":
            # Late fixes show the breach began earlier: the same alert, its start moved back.
            row = await conn.fetchrow(
                "UPDATE alerts SET detail = detail || jsonb_build_object('start', $2::bigint)"
                " WHERE key = $1 AND coalesce((detail->>'start')::bigint, $2 + 1) > $2"
                " RETURNING *",
                v.key,
                v.detail["start"],
            )
            done.append(("extended", v, row))
        elif v.action == "join":
            # More people confirmed at an open gathering: the same alert, listing them too
            # (so their offices see it); the escalator tells those offices (alerts.escalation).
            row = await conn.fetchrow(_JOIN, v.key, msgspec.json.encode(v.detail).decode())
            done.append(("joined", v, row))
        elif v.action == "clear":
            row = await conn.fetchrow(
                "UPDATE alerts SET active = false, cleared_at = $2 WHERE key = $1 AND active"
                " RETURNING *",
                v.key,
                utc(v.ts),
            )
            done.append(("cleared", v, row))
        # any other action is not about an alert: pursuit (alerts.pursuit)
    steps: list[tuple[int, str, str, Mapping[str, Any]]] = []
    changes: list[tuple[dict[str, Any], Row]] = []
    wake = False  # new or reopened cases for the escalator
    for event, v, row in done:
        if row is None:
            continue  # already recorded: a restart re-judging committed fixes
        step: dict[str, Any] = {"ts": iso(v.ts), "late": v.late}
        case_reopened = event == "reopened" and row["case_reopened"]
        if case_reopened:
            step["case_reopened"] = True
        if event == "joined":
            step["people"] = v.detail["joined"]
        steps.append((row["id"], "engine", event, step))
        if event == "raised" and row["hold"] is not None:
            steps.append((row["id"], HOLD_ACTOR, "held", row["hold"]))
        if event == "raised":
            ALERTS_RAISED.labels(v.type).inc()
        wake = wake or event in ("raised", "joined") or case_reopened
        changes.append((change_of(event, row), row))
    await append_events(conn, steps)
    await queue_changes(conn, changes)
    if wake:
        # Wakes the escalator (alerts.escalation) when this transaction commits: the new
        # (and reopened) alerts are on their way to the officers within moments.
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return [change for change, _ in changes]


async def _raise(conn: Conn, verdicts: Sequence[Verdict]) -> list[Row | None]:
    """Insert the alerts the raises (of distinct keys) open, each held if a suspension
    covers it (alerts.hold); the row of each, None where its alert was already recorded."""
    holds = await find_holds(conn, [(v.supervisee, v.type) for v in verdicts])
    rows = await conn.fetch(
        _RAISE,
        [v.key for v in verdicts],
        [v.type for v in verdicts],
        [v.supervisee for v in verdicts],
        [v.device for v in verdicts],
        [utc(v.ts) for v in verdicts],
        [v.late for v in verdicts],
        [SEVERITY.get(v.type, "normal") for v in verdicts],
        [v.detail for v in verdicts],
        [h[0] if h else None for h in holds],
        [h[1] if h else None for h in holds],
    )
    by_key = {r["key"]: r for r in rows}
    return [by_key.get(v.key) for v in verdicts]


# The breach came back within reopen_s of its end: the same alert, active again. One that
# was resolved meanwhile is a case to work again: open, its disposition cleared (the
# timeline keeps it), unrouted so the escalator tells the officer from level 0. A reopen
# older than the alert's recorded end is a restart re-judging what is already recorded.
_REOPEN = """
UPDATE alerts a SET active = true, cleared_at = NULL,
    status = CASE WHEN was.status = 'resolved' THEN 'open' ELSE a.status END,
    disposition = CASE WHEN was.status = 'resolved' THEN NULL ELSE a.disposition END,
    reason = CASE WHEN was.status = 'resolved' THEN NULL ELSE a.reason END,
    note = CASE WHEN was.status = 'resolved' THEN NULL ELSE a.note END,
    routed = a.routed AND was.status <> 'resolved',
    escalation = CASE WHEN was.status = 'resolved' THEN 0 ELSE a.escalation END,
    escalate_at = CASE WHEN was.status = 'resolved' THEN NULL ELSE a.escalate_at END
FROM (SELECT id, status FROM alerts WHERE key = $1 FOR UPDATE) was
WHERE a.id = was.id AND NOT a.active AND (a.cleared_at IS NULL OR a.cleared_at <= $2)
RETURNING a.*, was.status = 'resolved' AS case_reopened
"""

# Whoever joined is added once: a restart re-judging the join finds them listed already.
_JOIN = """
UPDATE alerts SET detail = detail || jsonb_build_object(
    'people', (SELECT jsonb_agg(DISTINCT p ORDER BY p) FROM jsonb_array_elements_text(
        coalesce(detail->'people', '[]') || ($2::text::jsonb->'joined')) p),
    'positions', coalesce(detail->'positions', '[]') || ($2::text::jsonb->'positions'))
WHERE key = $1 AND NOT coalesce(detail->'people', '[]') @> ($2::text::jsonb->'joined')
RETURNING *
"""


def change_of(event: str, row: Row, **extra: Any) -> dict[str, Any]:
    """The change to the alert `row` as live clients (alerts.feed) and webhooks see it."""
    return {"event": event, "alert": alert_object(row), **extra}


async def queue_change(conn: Conn, event: str, row: Row, **extra: Any) -> dict[str, Any]:
    """Queue the webhook event of a change to the alert `row`, in the caller's transaction,
    and return the change ({"event", "alert", **extra}) for live clients (alerts.feed)."""
    change = change_of(event, row, **extra)
    await queue_changes(conn, [(change, row)])
    return change


async def queue_changes(conn: Conn, changes: Sequence[tuple[dict[str, Any], Row]]) -> None:
    """Queue the webhook event of each (change, alert row), in their order, in the caller's
    transaction. A held alert's changes are not sent (alerts.hold): its release sends it
    as it then is."""
    # One stream per person: a receiver stuck on one message holds back only that
    # person's later changes, which must stay in order.
    await enqueue_each(
        conn,
        WEBHOOK,
        [(change, row["supervisee_id"]) for change, row in changes if not is_held(row)],
    )


async def append_event(
    conn: Conn,
    alert_id: int,
    actor: str,
    action: str,
    detail: Mapping[str, Any],
    *,
    at: datetime | None = None,
) -> None:
    """A step in the alert's timeline, in the caller's transaction: `actor` is 'engine',
    'scheduler', 'notifier', `device:<id>` or a token's subject; `at` defaults to the
    transaction's time. A delivery about an alert that is not (or no longer) in the record
    leaves no entry."""
    await append_events(conn, [(alert_id, actor, action, detail)], at=at)


async def append_events(
    conn: Conn,
    steps: Sequence[tuple[int, str, str, Mapping[str, Any]]],
    *,
    at: datetime | None = None,
) -> None:
    """`append_event` for each (alert id, actor, action, detail) of `steps`, in their
    order, with one insert."""
    if not steps:
        return
    # The detail is sent as text and cast by the server, so this works whether or not the
    # connection has a jsonb codec (storage.db's pool has one).
    await conn.execute(
        "INSERT INTO alert_events (alert_id, at, actor, action, detail)"
        " SELECT e.alert_id, COALESCE($1::timestamptz, now()), e.actor, e.action,"
        " e.detail::jsonb"
        " FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY"
        " AS e(alert_id, actor, action, detail, i)"
        " WHERE EXISTS (SELECT FROM alerts WHERE id = e.alert_id) ORDER BY e.i",
        at,
        [s[0] for s in steps],
        [s[1] for s in steps],
        [s[2] for s in steps],
        [msgspec.json.encode(s[3]).decode() for s in steps],
    )


# --- people's steps: acknowledge (签收) and resolve (处置) ---------------------------------

# Where each step may start from; anything else is a conflict with the alert's state.
STEPS = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}


# Why a false alarm was one, when the service still sees the person outside (codes with
# their Chinese in docs/glossary.md): the person was checked where they should be (a call,
# a video call or a visit), the positions drift (indoors, poor signal), or the zone is drawn
# wrong.
FALSE_ALARM_REASONS = ("verified_in_place", "position_drift", "zone_error")


class StepRefused(Exception):
    """The alert's state does not allow the step (the API answers 409); `detail` says what
    a client may do about it."""

    def __init__(self, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = dict(detail or {})


def still_in_breach(row: Row) -> bool:
    """A breach whose episode the engine has not ended: the person is still outside."""
    return bool(row["active"]) and row["type"] in GEOFENCE_RULES


def _check_resolution(row: Row, detail: Mapping[str, Any], while_active: bool) -> None:
    """Resolving a breach that is still going on must be meant, and a false alarm must say
    why the service's view of the person is wrong."""
    if not still_in_breach(row):
        return
    facts = {"still_in_breach": True, "supervisee": row["supervisee_id"], "type": row["type"]}
    if not while_active:
        raise StepRefused(
            f"alert {row['id']} is a breach still in progress: {row['supervisee_id']} is still"
            " outside. Resolved, it stays shown as still in breach until the person is back;"
            " send while_active: true to resolve it anyway",
            facts,
        )
    if detail.get("disposition") == "false_alarm" and not detail.get("reason"):
        raise StepRefused(
            f"alert {row['id']} is a breach still in progress: a false alarm needs a reason"
            f" ({', '.join(FALSE_ALARM_REASONS)})",
            {**facts, "reasons": list(FALSE_ALARM_REASONS)},
        )


async def take_step(
    conn: Conn,
    offices: Offices,
    alert_id: int,
    step: str,
    *,
    actor: str,
    detail: Mapping[str, Any],
    while_active: bool = False,
) -> dict[str, Any] | None:
    """Acknowledge or resolve (`step`) the alert in the caller's transaction: its status,
    with `detail`'s disposition, reason and note, the timeline entry (`detail`, marked
    `while_active` when the breach was still going on) and the webhook event. Returns the
    change for live clients; None if the caller (`offices`) has no such alert. Raises
    StepRefused when the alert's state does not allow it: its status, or a breach still in
    progress resolved without `while_active` (or as a false alarm without a reason)."""
    row = await get_alert(conn, offices, alert_id, lock=True)
    if row is None:
        return None
    if row["status"] not in STEPS[step]:
        raise StepRefused(
            f"alert {alert_id} is {row['status']}; only an alert that is"
            f" {' or '.join(STEPS[step])} can be {step}"
        )
    if step == "resolved":
        _check_resolution(row, detail, while_active)
        if still_in_breach(row):
            detail = {**detail, "while_active": True}
    row = await conn.fetchrow(
        "UPDATE alerts SET status = $2, disposition = COALESCE($3, disposition),"
        " reason = COALESCE($4, reason), note = COALESCE($5, note) WHERE id = $1 RETURNING *",
        alert_id,
        step,
        detail.get("disposition"),
        detail.get("reason"),
        detail.get("note"),
    )
    assert row is not None
    await append_event(conn, alert_id, actor, step, detail)
    return await queue_change(conn, step, row)


# --- reads -------------------------------------------------------------------------------

# A gathering is raised on one of its people but concerns them all: every office with one
# of them sees it, as every such office is told of it (alerts.routing.alert_contacts).
_ALERTS_IN_SCOPE = (
    "FROM alerts LEFT JOIN supervisees s ON s.id = alerts.supervisee_id"
    f" WHERE ({IN_SCOPE} OR alerts.type = 'gathering' AND EXISTS (SELECT 1 FROM supervisees g"
    "  WHERE g.id IN (SELECT jsonb_array_elements_text(alerts.detail->'people'))"
    "  AND g.office_id = ANY($1::text[])))"
)


async def list_alerts(
    conn: Conn,
    offices: Offices,
    *,
    supervisee: str | None,
    type: str | None,
    status: str | None,
    before: int | None,
    limit: int,
    active: bool | None = None,
) -> list[Row]:
    """Newest raised first; `before` is the last id of the previous page."""
    return await conn.fetch(
        f"SELECT alerts.* {_ALERTS_IN_SCOPE}"
        " AND ($2::text IS NULL OR alerts.supervisee_id = $2"
        "  OR alerts.type = 'gathering' AND alerts.detail->'people' ? $2)"
        " AND ($3::text IS NULL OR alerts.type = $3)"
        " AND ($4::text IS NULL OR alerts.status = $4)"
        " AND ($5::bigint IS NULL OR alerts.id < $5)"
        " AND ($7::boolean IS NULL OR alerts.active = $7)"
        " ORDER BY alerts.id DESC LIMIT $6",
        offices,
        supervisee,
        type,
        status,
        before,
        limit,
        active,
    )


async def get_alert(conn: Conn, offices: Offices, alert: int, *, lock: bool = False) -> Row | None:
    """`lock` holds the row until the transaction ends, so two operators working the same
    alert are serialised and the second sees the first one's status."""
    return await conn.fetchrow(
        f"SELECT alerts.* {_ALERTS_IN_SCOPE} AND alerts.id = $2"
        + (" FOR UPDATE OF alerts" if lock else ""),
        offices,
        alert,
    )


async def alerts_between(
    conn: Conn, offices: Offices, supervisee: str, start: datetime, end: datetime
) -> list[Row]:
    """The person's alerts whose episode meets [start, end): confirmed before `end` and
    not cleared before `start`; oldest first."""
    return await conn.fetch(
        f"SELECT alerts.* {_ALERTS_IN_SCOPE} AND alerts.supervisee_id = $2"
        " AND alerts.ts < $4 AND (alerts.cleared_at IS NULL OR alerts.cleared_at >= $3)"
        " ORDER BY alerts.ts, alerts.id",
        offices,
        supervisee,
        start,
        end,
    )


async def timeline(conn: Conn, alert: int) -> list[Row]:
    return await conn.fetch(
        "SELECT at, actor, action, detail FROM alert_events WHERE alert_id = $1 ORDER BY at, id",
        alert,
    )
