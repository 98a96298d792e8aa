"""Check-ins (定位签到, docs/rules.md "Check-ins"): at set times and at random minutes of
the waking day, the person is asked for a fresh position from their phone within a
deadline; some check-ins also want a face verification from the supervision app.

A schedule is the person's own or, failing that, their supervision level's. Each minute the
duty (`CheckIns`, run by duties.scheduler) asks what has come due — a `reportLocation` to
the person's OwnTracks phone, and an SMS to their own number through the gateway when
both are known — and settles what is pending: answered by a fix from one of the person's
phones taken between the request (less ANSWER_SLACK) and the deadline, accurate to
ANSWER_ACC_M, plus a passed verification when one is wanted; missed at the deadline
otherwise, or at once on a failed verification, with a `checkin_missed` alert saying why.
Only people with a phone are asked: a check-in is about the phone being with its owner.

Random minutes are drawn per person and day from FENCEWATCH_CHECKIN_SECRET, so the
service draws the same ones after a restart and nobody without the secret can foresee
them."""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from alerts import record
from alerts.downlink import queue_owntracks_command
from alerts.outbox import enqueue
from alerts.sms import CHANNEL as SMS
from fencewatch.timefmt import epoch_ms, iso_time
from geofence.model import Verdict
from storage.db import Conn, Row
from supervision import stillness

TYPE = "checkin_missed"
ISSUED_BY = "checkin"
ANSWER_SLACK = timedelta(seconds=60)
ANSWER_ACC_M = 100.0
# Requests that came due while the service was down are still made this long after.
CATCH_UP = timedelta(minutes=10)
DEFAULT_DEADLINE_S = 900
# In a heightened period (重大节假日、会议期间) in force for the person, this many times the
# random check-ins.
HEIGHTENED_FACTOR = 2


class Schedule(msgspec.Struct, frozen=True):
    times: tuple[str, ...] = ()
    random_per_day: int = 0
    waking_from: str = "08:00"
    waking_to: str = "21:00"
    deadline_s: int = DEFAULT_DEADLINE_S
    face: bool = False


def hhmm(value: str) -> time:
    """A local time of day written HH:MM, or ValueError."""
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"times must be HH:MM, got {value!r}")
    return time(int(hours), int(minutes))


# Asked every minute for every person: each day's plan is drawn once.
@functools.lru_cache(maxsize=65_536)
def day_plan(
    supervisee: str,
    day: date,
    schedule: Schedule,
    tz: ZoneInfo,
    secret: str,
    heightened: bool = False,
) -> tuple[tuple[datetime, str], ...]:
    """(due time, fixed | random) of the person's check-ins on local `day`, in order;
    `heightened`: HEIGHTENED_FACTOR times the random ones, the usual ones among them."""
    fixed = {datetime.combine(day, hhmm(t), tz) for t in schedule.times}
    first = datetime.combine(day, hhmm(schedule.waking_from), tz)
    last = datetime.combine(day, hhmm(schedule.waking_to), tz)
    minutes = [
        first + timedelta(minutes=m) for m in range(int((last - first).total_seconds() // 60))
    ]
    free = [m for m in minutes if m not in fixed]
    seed = hmac.new(secret.encode(), f"{supervisee}:{day.isoformat()}".encode(), hashlib.sha256)
    # One shuffle a day, of which a heightened period takes more: the minutes already due
    # stay the same whichever the period says.
    random.Random(seed.digest()).shuffle(free)
    drawn = free[: schedule.random_per_day * (HEIGHTENED_FACTOR if heightened else 1)]
    return tuple(sorted([(t, "fixed") for t in fixed] + [(t, "random") for t in drawn]))


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
# Through the person's phones and the fixes' key (device_id, ts, seq).
_FIXES = """
    SELECT f.device_id, f.ts, f.lat, f.lon, f.acc FROM device_assignments a
    JOIN devices d ON d.id = a.device_id AND d.kind = 'phone'
    JOIN fixes f ON f.device_id = a.device_id AND f.ts BETWEEN $2 AND $3
    WHERE a.supervisee_id = $1 AND a.until IS NULL AND f.lat IS NOT NULL
    ORDER BY (f.acc IS NULL OR f.acc > $4), f.ts
"""


_HISTORY = """
    SELECT ts, lat, lon, acc FROM fixes
    WHERE device_id = $1 AND ts BETWEEN $2 AND $3 AND lat IS NOT NULL ORDER BY ts
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
        _FIXES, c["supervisee_id"], c["due_at"] - ANSWER_SLACK, c["deadline_at"], ANSWER_ACC_M
    )
    good = next((f for f in fixes if f["acc"] is not None and f["acc"] <= ANSWER_ACC_M), None)
    shown = good or (fixes[0] if fixes else None)
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
    face_ok = not c["face"] or c["face_verdict"] == "pass"
    if good is not None and face_ok:
        await conn.execute(
            "UPDATE checkins SET status = 'answered', settled_at = $2 WHERE id = $1", c["id"], now
        )
        return "answered"
    if c["face_verdict"] == "fail":
        reason = "face_failed"
    elif now < c["deadline_at"]:
        return None
    elif good is not None:
        reason = "no_face"
    else:
        reason = "poor_fix" if fixes else "no_fix"
    await _missed(conn, c, reason, shown, now, tz)
    return "missed"


async def _missed(
    conn: Conn, c: Mapping[str, Any], reason: str, fix: Row | None, now: datetime, tz: ZoneInfo
) -> None:
    device = (fix["device_id"] if fix else None) or await conn.fetchval(
        "SELECT d.id FROM device_assignments a JOIN devices d ON d.id = a.device_id"
        " WHERE a.supervisee_id = $1 AND a.until IS NULL ORDER BY d.kind = 'phone' DESC, d.id"
        " LIMIT 1",
        c["supervisee_id"],
    )
    detail: dict[str, Any] = {
        "checkin": c["id"],
        "reason": reason,
        "due_at": iso_time(c["due_at"]),
        "deadline_at": iso_time(c["deadline_at"]),
        "face": c["face"],
    }
    if fix is not None:
        detail |= {"lat": fix["lat"], "lon": fix["lon"], "acc": fix["acc"]}
    if device:
        still = await _stillness(conn, c["supervisee_id"], device, now, tz)
        if still is not None:
            detail["stationary"] = {"device": device, **still}
    key = f"{TYPE}:{c['id']}"
    ts = epoch_ms(min(now, c["deadline_at"]) if reason == "face_failed" else c["deadline_at"])
    await record.apply(
        conn, [Verdict("raise", TYPE, c["supervisee_id"], device or "", ts, key, False, detail)]
    )
    await conn.execute(
        "UPDATE checkins SET status = 'missed', reason = $2, settled_at = $3,"
        " alert_id = (SELECT id FROM alerts WHERE key = $4) WHERE id = $1",
        c["id"],
        reason,
        now,
        key,
    )
