"""Supervisees, the devices they wear, and the assignments between them (a closed
assignment stays as history)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from geofence.model import DeviceRef, Supervisee
from storage.db import Conn, Row
from storage.repo import IN_SCOPE, Offices

_SUPERVISEE_COLUMNS = (
    "s.id, s.name, s.office_id AS office, s.officer_id AS officer, s.level, s.jurisdiction,"
    " s.exclusion, s.home_zone AS home, s.workplace, s.term_start, s.term_end, s.status, s.phone,"
    " s.updated_at,"
    " ARRAY(SELECT a.device_id FROM device_assignments a"
    " WHERE a.supervisee_id = s.id AND a.until IS NULL ORDER BY a.device_id) AS devices"
)


async def list_supervisees(conn: Conn, offices: Offices, office: str | None = None) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_SUPERVISEE_COLUMNS} FROM supervisees s"
        f" WHERE {IN_SCOPE} AND ($2::text IS NULL OR s.office_id = $2) ORDER BY s.id",
        offices,
        office,
    )


async def get_supervisee(conn: Conn, offices: Offices, supervisee: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_SUPERVISEE_COLUMNS} FROM supervisees s WHERE {IN_SCOPE} AND s.id = $2",
        offices,
        supervisee,
    )


async def supervisee_office(conn: Conn, supervisee: str) -> tuple[bool, str | None]:
    """(exists, office) regardless of scope: for checking a write against the caller's scope."""
    row = await conn.fetchrow("SELECT office_id FROM supervisees WHERE id = $1", supervisee)
    return (False, None) if row is None else (True, row["office_id"])


async def put_supervisee(
    conn: Conn,
    supervisee: str,
    *,
    name: str,
    office: str | None,
    officer: str | None,
    level: str,
    jurisdiction: Sequence[str],
    exclusion: Sequence[str],
    home: str | None,
    term_start: Any,
    term_end: Any,
    status: str,
    phone: str | None = None,
    workplace: str | dict[str, Any] | None = None,
) -> None:
    """Create or replace every field of a supervisee (HTTP PUT)."""
    await conn.execute(
        "INSERT INTO supervisees (id, name, office_id, officer_id, level, jurisdiction,"
        " exclusion, home_zone, term_start, term_end, status, phone, workplace)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, office_id = EXCLUDED.office_id,"
        " officer_id = EXCLUDED.officer_id, level = EXCLUDED.level,"
        " jurisdiction = EXCLUDED.jurisdiction, exclusion = EXCLUDED.exclusion,"
        " home_zone = EXCLUDED.home_zone, term_start = EXCLUDED.term_start,"
        " term_end = EXCLUDED.term_end, status = EXCLUDED.status, phone = EXCLUDED.phone,"
        " workplace = EXCLUDED.workplace, updated_at = now()",
        supervisee,
        name,
        office,
        officer,
        level,
        list(jurisdiction),
        list(exclusion),
        home,
        term_start,
        term_end,
        status,
        phone,
        workplace,
    )


async def load_supervisees(conn: Conn, people: Sequence[Supervisee]) -> None:
    """Upsert the fields a roster (spec 4.2) carries; officer, term and status, which a
    roster does not know, are kept, and so are a name or office it leaves out. An id must
    not come twice."""
    await conn.execute(
        "INSERT INTO supervisees (id, name, office_id, level, jurisdiction, exclusion, home_zone,"
        " workplace)"
        # The record's columns are named after the Supervisee fields, as encoded.
        " SELECT id, name, office, level, jurisdiction, exclusion, home, NULLIF(workplace, 'null')"
        " FROM jsonb_to_recordset($1::jsonb) AS s(id text, name text, office text, level text,"
        "  jurisdiction text[], exclusion text[], home text, workplace jsonb)"
        " ON CONFLICT (id) DO UPDATE SET"
        " name = COALESCE(NULLIF(EXCLUDED.name, ''), supervisees.name),"
        " office_id = COALESCE(EXCLUDED.office_id, supervisees.office_id),"
        " level = EXCLUDED.level, jurisdiction = EXCLUDED.jurisdiction,"
        " exclusion = EXCLUDED.exclusion, home_zone = EXCLUDED.home_zone,"
        " workplace = EXCLUDED.workplace, updated_at = now()",
        people,
    )


async def assign_officers(conn: Conn, officers: dict[str, str]) -> None:
    """Each supervisee's responsible officer (supervisee → officer id)."""
    await conn.execute(
        "UPDATE supervisees s SET officer_id = a.officer, updated_at = now()"
        " FROM unnest($1::text[], $2::text[]) AS a(supervisee, officer)"
        " WHERE s.id = a.supervisee AND s.officer_id IS DISTINCT FROM a.officer",
        list(officers),
        list(officers.values()),
    )


async def active_supervisee_ids(conn: Conn, offices: Offices) -> list[str]:
    rows = await conn.fetch(
        f"SELECT s.id FROM supervisees s WHERE {IN_SCOPE} AND s.status = 'active' ORDER BY s.id",
        offices,
    )
    return [r["id"] for r in rows]


async def lock_supervisee(conn: Conn, supervisee: str) -> None:
    """Serialise decisions about one person until the transaction ends: two approvals at
    once must not both pass the two-month total."""
    await conn.execute("SELECT 1 FROM supervisees WHERE id = $1 FOR UPDATE", supervisee)


_DEVICE_QUERY = (
    "SELECT d.id, d.kind, d.owntracks, d.osmand, d.jt808, d.crs, d.model,"
    " a.supervisee_id AS supervisee,"
    " a.since, s.office_id AS office"
    " FROM devices d"
    " LEFT JOIN device_assignments a ON a.device_id = d.id AND a.until IS NULL"
    " LEFT JOIN supervisees s ON s.id = a.supervisee_id"
    f" WHERE {IN_SCOPE}"
)


async def list_devices(conn: Conn, offices: Offices) -> list[Row]:
    """Unscoped callers see the whole stock; scoped ones the devices their people wear."""
    return await conn.fetch(f"{_DEVICE_QUERY} ORDER BY d.id", offices)


async def get_device(conn: Conn, offices: Offices, device: str) -> Row | None:
    return await conn.fetchrow(f"{_DEVICE_QUERY} AND d.id = $2", offices, device)


_DEVICE_UPSERT = (
    " ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, owntracks = EXCLUDED.owntracks,"
    " osmand = EXCLUDED.osmand, jt808 = EXCLUDED.jt808, crs = EXCLUDED.crs,"
    # Another terminal under the device's id does not inherit the old one's code.
    " jt808_auth = CASE WHEN devices.jt808 IS NOT DISTINCT FROM EXCLUDED.jt808"
    " THEN devices.jt808_auth END,"
    " model = COALESCE(EXCLUDED.model, devices.model)"
)


async def upsert_device(conn: Conn, device: DeviceRef, model: str | None = None) -> None:
    """A model left out keeps the stored one (rosters do not carry models)."""
    await conn.execute(
        "INSERT INTO devices (id, kind, owntracks, osmand, jt808, crs, model)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)" + _DEVICE_UPSERT,
        device.id,
        device.kind,
        device.owntracks,
        device.osmand,
        device.jt808,
        device.crs,
        model,
    )


async def upsert_devices(conn: Conn, devices: Sequence[DeviceRef]) -> None:
    """`upsert_device` without a model for many in one statement; an id must not come twice."""
    await conn.execute(
        # The record's columns are named after the DeviceRef fields, as encoded.
        "INSERT INTO devices (id, kind, owntracks, osmand, jt808, crs)"
        " SELECT * FROM jsonb_to_recordset($1::jsonb)"
        " AS d(id text, kind text, owntracks text, osmand text, jt808 text, crs text)"
        + _DEVICE_UPSERT,
        devices,
    )


async def assign_device(conn: Conn, device: str, supervisee: str) -> tuple[str | None, bool]:
    """Make `supervisee` the device's wearer: closes another wearer's open assignment and
    opens one unless it is already open. Returns (previous wearer, whether anything changed)."""
    previous = await conn.fetchval(
        "UPDATE device_assignments SET until = now()"
        " WHERE device_id = $1 AND until IS NULL AND supervisee_id <> $2 RETURNING supervisee_id",
        device,
        supervisee,
    )
    opened = await conn.fetchval(
        "INSERT INTO device_assignments (device_id, supervisee_id) VALUES ($1, $2)"
        " ON CONFLICT (device_id) WHERE until IS NULL DO NOTHING RETURNING id",
        device,
        supervisee,
    )
    return previous, opened is not None


async def unassign_device(conn: Conn, device: str) -> str | None:
    """Close the device's open assignment; returns who wore it, None if nobody did."""
    wearer: str | None = await conn.fetchval(
        "UPDATE device_assignments SET until = now()"
        " WHERE device_id = $1 AND until IS NULL RETURNING supervisee_id",
        device,
    )
    return wearer


async def reassign_devices(
    conn: Conn, wearers: Mapping[str, str], supervisees: Sequence[str]
) -> None:
    """Make each device of `wearers` (device -> supervisee) worn by its supervisee, and
    unassign the devices `supervisees` wear that are not in it. Closed assignments stay
    as history."""
    devices, people = list(wearers), list(wearers.values())
    # Joins rather than `= ANY(array)`, which tests each row against the whole array.
    await conn.execute(
        "UPDATE device_assignments a SET until = now()"
        " FROM unnest($1::text[], $2::text[]) AS w(device_id, supervisee_id)"
        " WHERE a.device_id = w.device_id AND a.until IS NULL"
        " AND a.supervisee_id <> w.supervisee_id",
        devices,
        people,
    )
    await conn.execute(
        "UPDATE device_assignments a SET until = now() FROM unnest($1::text[]) AS s(id)"
        " WHERE a.supervisee_id = s.id AND a.until IS NULL"
        " AND NOT EXISTS (SELECT FROM unnest($2::text[]) AS w(device_id)"
        "  WHERE w.device_id = a.device_id)",
        list(supervisees),
        devices,
    )
    # Opened last: a device has one open assignment, and an insert that meets one does
    # nothing, so the moved devices' had to be closed first.
    await conn.execute(
        "INSERT INTO device_assignments (device_id, supervisee_id)"
        " SELECT * FROM unnest($1::text[], $2::text[])"
        " ON CONFLICT (device_id) WHERE until IS NULL DO NOTHING",
        devices,
        people,
    )


async def unassign_devices_of_kind(conn: Conn, supervisee: str, kind: str) -> list[str]:
    """Close the person's open assignments of devices of this kind; returns their ids."""
    rows = await conn.fetch(
        "UPDATE device_assignments a SET until = now() FROM devices d"
        " WHERE d.id = a.device_id AND a.supervisee_id = $1 AND a.until IS NULL"
        " AND d.kind = $2 RETURNING a.device_id",
        supervisee,
        kind,
    )
    return sorted(r["device_id"] for r in rows)


async def device_history(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(
        "SELECT a.device_id AS device, d.kind, a.since, a.until FROM device_assignments a"
        " JOIN devices d ON d.id = a.device_id WHERE a.supervisee_id = $1"
        " ORDER BY a.since DESC, a.id DESC",
        supervisee,
    )
