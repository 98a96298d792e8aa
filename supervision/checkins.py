"""Check-ins (定位签到, docs/rules.md "Check-ins"): at set times and at random minutes of
the waking day, the person is asked for a fresh position from their phone within a
deadline; some check-ins also want a face verification from the supervision app.

A schedule is the person's own or, failing that, their supervision level's. Each minute the
duty (`CheckIns`, run by duties.scheduler) asks what has come due — a `reportLocation` to
the person's OwnTracks phone, and an SMS to their own number through the gateway when
both are known — and settles what is pending by the rule in supervision.checkin_rules
(which `fencewatch replay` runs too), with a `checkin_missed` alert saying why.
Only people with a phone are asked: a check-in is about the phone being with its owner.

Random minutes are drawn per person and day from FENCEWATCH_CHECKIN_SECRET, so the
service draws the same ones after a restart and nobody without the secret can foresee
them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts import record
from alerts.downlink import queue_owntracks_command
from alerts.outbox import enqueue
from alerts.sms import CHANNEL as SMS
from fencewatch.timefmt import epoch_ms
from geofence.model import Verdict
from storage import hours
from storage.db import Conn, Row
from supervision import checkin_rules, stillness
from supervision.checkin_rules import (
    ANSWER_SLACK,
    TYPE,
    Schedule,
    alert_ts,
    day_plan,
    detail,
    hhmm,
)

ISSUED_BY = "checkin"
# Requests that came due while the service was down are still made this long after.
CATCH_UP = timedelta(minutes=10)


_PEOPLE = """
    SELECT s.id, s.phone, coalesce(own.scope, lvl.scope) AS scope,
           coalesce(own.times, lvl.times) AS times,
           coalesce(own.random_per_day, lvl.random_per_day) AS random_per_day,
           coalesce(own.waking_from, lvl.waking_from) AS waking_from,
           coalesce(own.waking_to, lvl.waking_to) AS waking_to,
           coalesce(own.deadline_s, lvl.deadline_s) AS deadline_s,
           coalesce(own.face, lvl.face) AS face,
           (SELECT array_agg(d.id || '|' || coalesce(d.owntracks, '') ORDER BY d.id)
              FROM device_assignments a JOIN devices d ON d.id = a.device_id
             WHERE a.supervisee_id = s.id AND a.until IS NULL AND d.kind = 'phone') AS phones,
           EXISTS (SELECT FROM heightened_periods h
                    WHERE h.starts_at <= $1 AND h.ends_at > $1 AND (h.offices = '{}'
                      OR s.office_id = ANY(fencewatch_office_subtrees(h.offices))))
             AS heightened
    FROM supervisees s
    LEFT JOIN checkin_schedules own ON own.scope = 'supervisee:' || s.id
    LEFT JOIN checkin_schedules lvl ON lvl.scope = 'level:' || s.level
    WHERE s.status = 'active' AND (own.scope IS NOT NULL OR lvl.scope IS NOT NULL)
"""
# Through the person's phones and the fixes' key (device_id, ts, seq) and the packed
# hours' (device_id, hour).
_TO = "$3::timestamptz + interval '1 microsecond'"  # BETWEEN's end, as an open bound
_OF_PHONE = "device_id = a.device_id AND ts BETWEEN $2 AND $3 AND lat IS NOT NULL"
_FIXES = f"""
    SELECT f.device_id, f.ts, f.lat, f.lon, f.acc FROM device_assignments a
    JOIN devices d ON d.id = a.device_id AND d.kind = 'phone'
    CROSS JOIN LATERAL {hours.hot_fixes(_OF_PHONE, "$2", _TO)} f
    WHERE a.supervisee_id = $1 AND a.until IS NULL
    ORDER BY f.ts
"""


_OF_DEVICE = "device_id = $1 AND ts BETWEEN $2 AND $3 AND lat IS NOT NULL"
_HISTORY = f"""
    SELECT ts, lat, lon, acc FROM {hours.hot_fixes(_OF_DEVICE, "$2", _TO)} f ORDER BY ts
"""
_WAKING = """
    SELECT coalesce(own.waking_from, lvl.waking_from) AS waking_from,
           coalesce(own.waking_to, lvl.waking_to) AS waking_to
    FROM supervisees s
    LEFT JOIN checkin_schedules own ON own.scope = 'supervisee:' || s.id
    LEFT JOIN checkin_schedules lvl ON lvl.scope = 'level:' || s.level
    WHERE s.id = $1
"""


async def _stillness(
    conn: Conn, supervisee: str, device: str, now: datetime, tz: ZoneInfo
) -> dict[str, object] | None:
    """The phone's unusually long stillness today, measured against the person's own
    past days (supervision.stillness), for the alert of a missed check-in."""
    hours = await conn.fetchrow(_WAKING, supervisee)
    if hours is None or hours["waking_from"] is None:
        return None
    start = (now - timedelta(days=stillness.HISTORY_DAYS + 1)).astimezone(tz)
    history = await conn.fetch(_HISTORY, device, start, now)
    fixes = [(r["ts"], r["lat"], r["lon"], r["acc"]) for r in history]
    waking = (hhmm(hours["waking_from"]), hhmm(hours["waking_to"]))
    return stillness.unusual(fixes, now, tz, waking)


async def put_schedule(conn: Conn, scope: str, schedule: Schedule, who: str | None) -> Row:
    """Set the schedule of `scope` (level:<level> or supervisee:<id>); the row as stored."""
    row = await conn.fetchrow(
        "INSERT INTO checkin_schedules (scope, times, random_per_day, waking_from, waking_to,"
        " deadline_s, face, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (scope) DO UPDATE SET times = EXCLUDED.times,"
        " random_per_day = EXCLUDED.random_per_day, waking_from = EXCLUDED.waking_from,"
        " waking_to = EXCLUDED.waking_to, deadline_s = EXCLUDED.deadline_s,"
        " face = EXCLUDED.face, updated_by = EXCLUDED.updated_by, updated_at = now()"
        " RETURNING *",
        scope,
        sorted(set(schedule.times)),
        schedule.random_per_day,
        schedule.waking_from,
        schedule.waking_to,
        schedule.deadline_s,
        schedule.face,
        who,
    )
    assert row is not None
    return row


def schedule_of(row: Row) -> Schedule:
    return Schedule(
        times=tuple(row["times"]),
        random_per_day=row["random_per_day"],
        waking_from=row["waking_from"],
        waking_to=row["waking_to"],
        deadline_s=row["deadline_s"],
        face=row["face"],
    )


def _phones(row: Row) -> list[tuple[str, str | None]]:
    return [(p.split("|")[0], p.split("|")[1] or None) for p in row["phones"] or []]


async def issue_due(conn: Conn, now: datetime, tz: ZoneInfo, secret: str, sms: bool) -> int:
    """Make the check-ins that have come due (up to CATCH_UP late); how many were made."""
    made = 0
    today = now.astimezone(tz).date()
    for person in await conn.fetch(_PEOPLE, now):
        phones = _phones(person)
        if not phones:
            continue
        schedule = schedule_of(person)
        for day in (today - timedelta(days=1), today):
            plan = day_plan(person["id"], day, schedule, tz, secret, person["heightened"])
            for due, kind in plan:
                if now - CATCH_UP < due <= now:
                    made += await _ask(conn, person, phones, due, kind, schedule, tz, sms)
    return made


async def _ask(
    conn: Conn,
    person: Row,
    phones: list[tuple[str, str | None]],
    due: datetime,
    kind: str,
    schedule: Schedule,
    tz: ZoneInfo,
    sms: bool,
) -> int:
    deadline = due + timedelta(seconds=schedule.deadline_s)
    checkin = await conn.fetchval(
        "INSERT INTO checkins (supervisee_id, due_at, deadline_at, kind, face)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
        person["id"],
        due,
        deadline,
        kind,
        schedule.face,
    )
    if checkin is None:
        return 0  # asked already
    via = []
    for device, owntracks in phones:
        if owntracks:
            await queue_owntracks_command(
                conn,
                device,
                owntracks,
                "report_location",
                issued_by=ISSUED_BY,
                supervisee=person["id"],
            )
            via.append("owntracks")
    if sms and person["phone"]:
        until = deadline.astimezone(tz).strftime("%H:%M")
        text = f"【社区矫正】请于{until}前打开矫正APP完成定位签到" + (
            "（需人脸核验）" if schedule.face else ""
        )
        await enqueue(
            conn,
            SMS,
            {"text": text, "kind": "checkin", "supervisee": person["id"], "checkin": checkin},
            recipient=person["phone"],
        )
        via.append("sms")
    await conn.execute("UPDATE checkins SET sent_via = $2 WHERE id = $1", checkin, via)
    return 1


async def settle(conn: Conn, now: datetime, tz: ZoneInfo) -> dict[str, int]:
    """Answer or miss every pending check-in that can be settled at `now`."""
    counts = {"answered": 0, "missed": 0}
    rows = await conn.fetch(
        "SELECT * FROM checkins WHERE status = 'pending' ORDER BY id FOR UPDATE SKIP LOCKED"
    )
    for c in rows:
        outcome = await settle_one(conn, dict(c), now, tz)
        if outcome:
            counts[outcome] += 1
    return counts


async def raised_at(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    """The alert changes of the check-ins missed at `now` (for live consoles, after the
    commit)."""
    rows = await conn.fetch(
        "SELECT a.* FROM checkins c JOIN alerts a ON a.id = c.alert_id"
        " WHERE c.status = 'missed' AND c.settled_at = $1 ORDER BY a.id",
        now,
    )
    return [{"event": "raised", "alert": record.alert_object(r)} for r in rows]


async def settle_one(conn: Conn, c: Mapping[str, Any], now: datetime, tz: ZoneInfo) -> str | None:
    """Settle the pending check-in `c` if it can be: 'answered', 'missed' or None."""
    fixes = await conn.fetch(
        _FIXES, c["supervisee_id"], c["due_at"] - ANSWER_SLACK, c["deadline_at"]
    )
    judged = checkin_rules.settle(fixes, c["face"], c["face_verdict"], now >= c["deadline_at"])
    shown = judged.shown
    if shown is not None:
        await conn.execute(
            "UPDATE checkins SET fix_device = $2, fix_ts = $3, fix_lat = $4, fix_lon = $5,"
            " fix_acc = $6 WHERE id = $1",
            c["id"],
            shown["device_id"],
            shown["ts"],
            shown["lat"],
            shown["lon"],
            shown["acc"],
        )
    if judged.status == "answered":
        await conn.execute(
            "UPDATE checkins SET status = 'answered', settled_at = $2 WHERE id = $1", c["id"], now
        )
    elif judged.status == "missed":
        assert judged.reason is not None
        await _missed(conn, c, judged.reason, shown, now, tz)
    return judged.status


async def _missed(
    conn: Conn, c: Mapping[str, Any], reason: str, fix: Row | None, now: datetime, tz: ZoneInfo
) -> None:
    device = (fix["device_id"] if fix else None) or await conn.fetchval(
        "SELECT d.id FROM device_assignments a JOIN devices d ON d.id = a.device_id"
        " WHERE a.supervisee_id = $1 AND a.until IS NULL ORDER BY d.kind = 'phone' DESC, d.id"
        " LIMIT 1",
        c["supervisee_id"],
    )
    info = {"checkin": c["id"], **detail(reason, c["due_at"], c["deadline_at"], c["face"], fix)}
    if device:
        still = await _stillness(conn, c["supervisee_id"], device, now, tz)
        if still is not None:
            info["stationary"] = {"device": device, **still}
    key = f"{TYPE}:{c['id']}"
    ts = epoch_ms(alert_ts(reason, c["deadline_at"], now))
    await record.apply(
        conn, [Verdict("raise", TYPE, c["supervisee_id"], device or "", ts, key, False, info)]
    )
    await conn.execute(
        "UPDATE checkins SET status = 'missed', reason = $2, settled_at = $3,"
        " alert_id = (SELECT id FROM alerts WHERE key = $4) WHERE id = $1",
        c["id"],
        reason,
        now,
        key,
    )
