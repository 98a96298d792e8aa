"""Who is told about an alert, and what they are told.

Levels (社区矫正 practice): 0 the supervisee's responsible officer (supervisees.officer_id);
1 the head of the person's justice station (司法所负责人): the office's head officer, any
officer of the office with role 'head', and the office's duty phone and e-mail; 2 the
county bureau (县级社区矫正机构) above it, the same way. A level with nobody on it is
still a step in the alert's timeline; a new alert whose officer cannot be reached goes to
the first level that has someone.

Everything here runs inside the caller's transaction and only writes outbox rows, so a
notification exists exactly when the routing step that decided it was committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from alerts import templates
from alerts.outbox import enqueue
from alerts.templates import AlertLike, Place
from storage import hours
from storage.db import Conn

SMS, EMAIL = "sms", "email"
MAX_LEVEL = 2
LEVELS = ("officer", "station", "county")


class Contact(msgspec.Struct, frozen=True):
    who: str  # "officer:<id>" or "office:<id>"
    name: str
    phone: str | None = None
    email: str | None = None


class Channels(msgspec.Struct, frozen=True):
    """The person-facing channels that have a sender in this deployment."""

    sms: bool = False
    email: bool = False
    downlink: bool = False


async def _office_contacts(conn: Conn, office: str) -> list[Contact]:
    rows = await conn.fetch(
        "SELECT 'officer:' || h.id AS who, h.name, h.phone, h.email"
        " FROM offices o JOIN officers h ON h.id = o.head_officer_id WHERE o.id = $1"
        " UNION SELECT 'officer:' || h.id, h.name, h.phone, h.email"
        " FROM officers h WHERE h.office_id = $1 AND h.role = 'head'"
        " UNION SELECT 'office:' || o.id, o.name, o.duty_phone, o.duty_email"
        " FROM offices o WHERE o.id = $1"
        "  AND (o.duty_phone IS NOT NULL OR o.duty_email IS NOT NULL)"
        " ORDER BY 1",
        office,
    )
    return [Contact(r["who"], r["name"], r["phone"], r["email"]) for r in rows]


async def _upper_office(conn: Conn, office: str) -> str | None:
    """The nearest county bureau (or city office) above `office`."""
    found: str | None = await conn.fetchval(
        "WITH RECURSIVE up(id, kind, parent_id, depth) AS ("
        " SELECT id, kind, parent_id, 0 FROM offices WHERE id = $1"
        " UNION ALL SELECT o.id, o.kind, o.parent_id, up.depth + 1"
        " FROM offices o JOIN up ON o.id = up.parent_id WHERE up.depth < 16)"
        " SELECT id FROM up WHERE depth > 0 AND kind IN ('county', 'city')"
        " ORDER BY depth LIMIT 1",
        office,
    )
    return found


async def contacts(conn: Conn, supervisee: str, level: int) -> list[Contact]:
    """Who is told at `level` about an alert of `supervisee`."""
    person = await conn.fetchrow(
        "SELECT s.office_id, o.id AS officer, o.name, o.phone, o.email FROM supervisees s"
        " LEFT JOIN officers o ON o.id = s.officer_id WHERE s.id = $1",
        supervisee,
    )
    if person is None:
        return []
    if level == 0:
        if person["officer"] is None:
            return []
        who = f"officer:{person['officer']}"
        return [Contact(who, person["name"], person["phone"], person["email"])]
    office = person["office_id"]
    if office is None:
        return []
    if level >= 2:
        office = await _upper_office(conn, office)
        if office is None:
            return []
    return await _office_contacts(conn, office)


async def first_contacts(conn: Conn, supervisee: str) -> tuple[int, list[Contact]]:
    """(level, contacts) of the first level that has someone, for a new alert."""
    for level in range(MAX_LEVEL + 1):
        found = await contacts(conn, supervisee, level)
        if found:
            return level, found
    return 0, []


def _concerned(alert: AlertLike) -> list[str]:
    """The people an alert concerns: its person, and for a gathering everyone it lists."""
    detail = alert["detail"] or {}
    people = detail.get("people") if alert["type"] == "gathering" else None
    return list(dict.fromkeys([alert["supervisee_id"], *(people or ())]))


async def alert_first_contacts(conn: Conn, alert: AlertLike) -> tuple[int, list[Contact]]:
    """(level, contacts) for a new alert: its person's first level with someone; for a
    gathering, that of every person it lists, so each one's office hears of it — once,
    however many of its people they have."""
    found: dict[str, Contact] = {}
    level = MAX_LEVEL
    for person in _concerned(alert):
        at, people_there = await first_contacts(conn, person)
        if people_there:
            level = min(level, at)
            found.update((c.who, c) for c in people_there)
    return (level if found else 0), list(found.values())


async def alert_contacts(conn: Conn, alert: AlertLike, level: int) -> list[Contact]:
    """Who is told at `level` of an alert going up: for a gathering, every listed person's
    office (or bureau) at that level, each once."""
    found: dict[str, Contact] = {}
    for person in _concerned(alert):
        found.update((c.who, c) for c in await contacts(conn, person, level))
    return list(found.values())


async def person_name(conn: Conn, supervisee: str) -> str:
    name: str | None = await conn.fetchval("SELECT name FROM supervisees WHERE id = $1", supervisee)
    return name or ""


async def place_of(conn: Conn, alert: AlertLike) -> Place:
    """Where the alert happened, as an officer reads it: lat/lon and the zone's name."""
    detail = alert["detail"] or {}
    lat, lon, note = detail.get("lat"), detail.get("lon"), ""
    if lat is None or lon is None:
        last = await conn.fetchrow(
            "SELECT w.lat, w.lon FROM device_assignments a CROSS JOIN LATERAL"
            f" {hours.newest('a.device_id', '$1', '$2::timestamptz')} w"
            " WHERE a.supervisee_id = $1 ORDER BY w.ts DESC LIMIT 1",
            alert["supervisee_id"],
            alert["ts"],
        )
        if last is not None:
            lat, lon, note = last["lat"], last["lon"], "最后位置"
    zone = ""
    kind = alert["type"]
    if kind == "exclusion_enter" and detail.get("zone"):
        zone = "禁止区域：" + await _zone_names(conn, [detail["zone"]])
    elif kind in ("jurisdiction_exit", "curfew_breach"):
        column = "jurisdiction" if kind == "jurisdiction_exit" else "ARRAY[home_zone]"
        ids = await conn.fetchval(
            f"SELECT {column} FROM supervisees WHERE id = $1", alert["supervisee_id"]
        )
        names = await _zone_names(conn, [z for z in ids or () if z])
        if names:
            zone = ("执行地：" if kind == "jurisdiction_exit" else "居住地：") + names
    return Place(lat=lat, lon=lon, zone=zone, note=note)


async def _zone_names(conn: Conn, ids: Sequence[str]) -> str:
    rows = await conn.fetch(
        "SELECT id, name FROM zones WHERE id = ANY($1::text[]) ORDER BY id", list(ids)
    )
    names = {r["id"]: r["name"] or r["id"] for r in rows}
    return "、".join(names.get(z, z) for z in ids)


async def notify(
    conn: Conn,
    alert: AlertLike,
    recipients: Sequence[Contact],
    *,
    event: str,
    level: int,
    channels: Channels,
    timezone: str,
    overdue_s: int | None = None,
) -> list[dict[str, str]]:
    """Queue the SMS and e-mail for `recipients`; returns what was queued, for the
    timeline (channel, recipient, who)."""
    if not (channels.sms or channels.email) or not recipients:
        return []
    name = await person_name(conn, alert["supervisee_id"])
    place = await place_of(conn, alert)
    people = _concerned(alert) if alert["type"] == "gathering" else []
    named = tuple([(await person_name(conn, p), p) for p in people])
    notice = templates.Notice(name, place, timezone, level, event, overdue_s, named)
    base = {
        "kind": "alert",
        "event": event,
        "level": level,
        "alert_id": alert["id"],
        "alert_type": alert["type"],
        "supervisee": alert["supervisee_id"],
        # Repeats of the same thing about the same person are folded (alerts.ratelimit).
        "dedup": f"raised:{alert['type']}"
        if event == "raised"
        else f"{event}:{alert['id']}:{level}",
    }
    queued: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for contact in recipients:
        common = {**base, "to": contact.who, "to_name": contact.name}
        if channels.sms and contact.phone and (SMS, contact.phone) not in seen:
            seen.add((SMS, contact.phone))
            text = templates.alert_text(alert, notice)
            await enqueue(conn, SMS, {**common, "text": text}, recipient=contact.phone)
            queued.append({"channel": SMS, "recipient": contact.phone, "to": contact.who})
        if channels.email and contact.email and (EMAIL, contact.email) not in seen:
            seen.add((EMAIL, contact.email))
            subject, body = templates.alert_email(alert, notice)
            await enqueue(
                conn,
                EMAIL,
                {**common, "subject": subject, "text": body},
                recipient=contact.email,
            )
            queued.append({"channel": EMAIL, "recipient": contact.email, "to": contact.who})
    return queued
