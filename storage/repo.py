"""Every SQL statement of the API and the loader, one function each.

Rows come back with the API's field names (`supervisee`, not `supervisee_id`) so callers
turn them into response models without renaming (alerts have their own record:
alerts.record). Functions that read personal data take `offices`: the caller's office
subtree, or None for an unscoped (centre-wide) caller; a row outside the subtree is
treated as absent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from fencewatch.timefmt import utc
from geofence.model import (
    GEOFENCE_RULES,
    MAP_STATES,
    DeviceRef,
    Leave,
    Supervisee,
    Window,
    ZoneDef,
)
from geofence.zones import schedule_to_json

Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Row: TypeAlias = asyncpg.Record
Offices: TypeAlias = Sequence[str] | None

# --- tokens, scope and audit -------------------------------------------------------------


async def insert_token(
    conn: Conn, token_hash: str, subject: str, role: str, office: str | None, expires: datetime
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO api_tokens (hash, subject, role, office_id, expires_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            token_hash,
            subject,
            role,
            office,
            expires,
        )
    )


async def token_by_hash(conn: Conn, token_hash: str) -> Row | None:
    return await conn.fetchrow(
        "SELECT t.subject, t.role, t.office_id AS office, o.kind AS office_kind, t.expires_at,"
        " t.revoked_at FROM api_tokens t LEFT JOIN offices o ON o.id = t.office_id"
        " WHERE t.hash = $1",
        token_hash,
    )


async def revoke_token(conn: Conn, token_hash: str) -> int | None:
    """The revoked token's id; None if there is no such live token."""
    token_id: int | None = await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now()"
        " WHERE hash = $1 AND revoked_at IS NULL RETURNING id",
        token_hash,
    )
    return token_id


async def office_subtree(conn: Conn, office: str) -> list[str]:
    """The office and every office below it; UNION (not ALL) stops at a parent cycle."""
    rows = await conn.fetch(
        "WITH RECURSIVE sub(id) AS ("
        " SELECT id FROM offices WHERE id = $1"
        " UNION SELECT o.id FROM offices o JOIN sub ON o.parent_id = sub.id)"
        " SELECT id FROM sub",
        office,
    )
    return [r["id"] for r in rows]


async def audit(
    conn: Conn, actor: str, role: str | None, action: str, obj: str, detail: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, role, action, object, detail) VALUES ($1, $2, $3, $4, $5)",
        actor,
        role,
        action,
        obj,
        detail,
    )


# --- offices and officers ----------------------------------------------------------------


# Offices as the API shows them; the head officer and duty contacts route escalations.
_OFFICE = (
    "id, name, kind, parent_id AS parent, head_officer_id AS head_officer, duty_phone, duty_email"
)


async def list_offices(conn: Conn) -> list[Row]:
    return await conn.fetch(f"SELECT {_OFFICE} FROM offices ORDER BY id")


async def office_ids(conn: Conn) -> set[str]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM offices")}


async def get_office(conn: Conn, office: str) -> Row | None:
    return await conn.fetchrow(f"SELECT {_OFFICE} FROM offices WHERE id = $1", office)


async def upsert_office(
    conn: Conn,
    office: str,
    name: str,
    kind: str,
    parent: str | None,
    head_officer: str | None = None,
    duty_phone: str | None = None,
    duty_email: str | None = None,
) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO offices (id, name, kind, parent_id, head_officer_id, duty_phone, duty_email)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,"
        " parent_id = EXCLUDED.parent_id, head_officer_id = EXCLUDED.head_officer_id,"
        " duty_phone = EXCLUDED.duty_phone, duty_email = EXCLUDED.duty_email"
        f" RETURNING {_OFFICE}",
        office,
        name,
        kind,
        parent,
        head_officer,
        duty_phone,
        duty_email,
    )
    assert row is not None
    return row


async def list_officers(conn: Conn, offices: Offices) -> list[Row]:
    return await conn.fetch(
        "SELECT id, name, office_id AS office, phone, email, role FROM officers"
        " WHERE ($1::text[] IS NULL OR office_id = ANY($1::text[])) ORDER BY id",
        offices,
    )


async def upsert_officer(
    conn: Conn,
    officer: str,
    name: str,
    office: str | None,
    phone: str | None,
    role: str,
    email: str | None = None,
) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO officers (id, name, office_id, phone, role, email)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, office_id = EXCLUDED.office_id,"
        " phone = EXCLUDED.phone, role = EXCLUDED.role, email = EXCLUDED.email"
        " RETURNING id, name, office_id AS office, phone, email, role",
        officer,
        name,
        office,
        phone,
        role,
        email,
    )
    assert row is not None
    return row


async def get_officer(conn: Conn, officer: str) -> Row | None:
    return await conn.fetchrow(
        "SELECT id, name, office_id AS office, phone, email, role FROM officers WHERE id = $1",
        officer,
    )


# --- zones -------------------------------------------------------------------------------

_ZONE_QUERY = (
    "SELECT z.id, z.kind, z.name, z.geometry, z.source_crs AS crs, z.schedule,"
    " z.radius_m AS radius FROM zones z"
    # A scoped caller sees the administrative boundaries (public geography), the zones its
    # offices made and those its own people are held to: home and exclusion zones locate a
    # person or a victim.
    # Naming a zone (as a leave destination, say) grants nothing: api/routes/leaves.py
    # takes only zones the caller can already read.
    " WHERE ($1::text[] IS NULL OR z.kind = 'jurisdiction' OR z.office_id = ANY($1::text[])"
    "  OR EXISTS (SELECT 1 FROM supervisees s WHERE s.office_id = ANY($1::text[])"
    "   AND (z.id = ANY(s.jurisdiction) OR z.id = ANY(s.exclusion) OR z.id = s.home_zone)))"
)


async def list_zones(conn: Conn, offices: Offices, kind: str | None = None) -> list[Row]:
    return await conn.fetch(
        f"{_ZONE_QUERY} AND ($2::text IS NULL OR z.kind = $2) ORDER BY z.id", offices, kind
    )


async def get_zone(conn: Conn, offices: Offices, zone: str) -> Row | None:
    return await conn.fetchrow(f"{_ZONE_QUERY} AND z.id = $2", offices, zone)


async def zone_exists(conn: Conn, zone: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM zones WHERE id = $1)", zone))


async def upsert_zone(
    conn: Conn, zone: ZoneDef, source: dict[str, Any] | None, office: str | None = None
) -> None:
    """Store a parsed zone; `source` is the feature as it came (before CRS conversion);
    `office` made it (None: the centre), kept from its first version."""
    await upsert_zones(conn, [(zone, source)], office)


async def upsert_zones(
    conn: Conn,
    zones: Iterable[tuple[ZoneDef, dict[str, Any] | None]],
    office: str | None = None,
) -> None:
    """`upsert_zone` for many in one statement; a zone id must not come twice."""
    rows = [
        {
            "office_id": office,
            "id": zone.id,
            "kind": zone.kind,
            "name": zone.name,
            "geometry": zone.geometry,
            "source_crs": zone.source_crs,
            "source": source,
            "schedule": schedule_to_json(zone.schedule),
            "radius_m": zone.radius_m,
            "properties": (source or {}).get("properties") or {},
        }
        for zone, source in zones
    ]
    await conn.execute(
        "INSERT INTO zones (office_id, id, kind, name, geometry, source_crs, source, schedule,"
        " radius_m, properties) SELECT * FROM jsonb_to_recordset($1::jsonb) AS z("
        "office_id text, id text, kind text, name text, geometry jsonb, source_crs text,"
        " source jsonb, schedule jsonb, radius_m float8, properties jsonb)"
        " ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name,"
        " geometry = EXCLUDED.geometry, source_crs = EXCLUDED.source_crs,"
        " source = EXCLUDED.source, schedule = EXCLUDED.schedule,"
        " radius_m = EXCLUDED.radius_m, properties = EXCLUDED.properties, updated_at = now()",
        rows,
    )


async def delete_zone(conn: Conn, zone: str) -> None:
    await conn.execute("DELETE FROM zones WHERE id = $1", zone)


async def zone_references(conn: Conn, zone: str) -> list[tuple[str, str]]:
    """(who, as what) for everything that still names the zone: supervisees by role, and
    leaves that have not ended (a past leave's destination is history, not a use)."""
    rows = await conn.fetch(
        "SELECT 'supervisee ' || s.id AS who, r.role FROM supervisees s, LATERAL (VALUES"
        " ('jurisdiction', $1 = ANY(s.jurisdiction)), ('exclusion', $1 = ANY(s.exclusion)),"
        " ('home', s.home_zone IS NOT DISTINCT FROM $1)) AS r(role, used) WHERE r.used"
        " UNION ALL"
        " SELECT 'leave ' || id, 'destination' FROM leaves WHERE $1 = ANY(destinations)"
        " AND status IN ('requested', 'approved') AND returned_at IS NULL AND ends_at > now()"
        " ORDER BY 1, 2",
        zone,
    )
    return [(r["who"], r["role"]) for r in rows]


async def zone_owner(conn: Conn, zone: str) -> str | None:
    """The office that made the zone (None: the centre, or a bulk load)."""
    owner: str | None = await conn.fetchval("SELECT office_id FROM zones WHERE id = $1", zone)
    return owner


async def zone_offices(conn: Conn, zone: str) -> set[str | None]:
    """The offices of everyone whose rules use the zone (None: a person of no office)."""
    rows = await conn.fetch(
        "SELECT s.office_id FROM supervisees s WHERE $1 = ANY(s.jurisdiction)"
        " OR $1 = ANY(s.exclusion) OR s.home_zone IS NOT DISTINCT FROM $1"
        " UNION SELECT s.office_id FROM leaves l JOIN supervisees s ON s.id = l.supervisee_id"
        " WHERE $1 = ANY(l.destinations) AND l.status IN ('requested', 'approved')"
        " AND l.returned_at IS NULL AND l.ends_at > now()",
        zone,
    )
    return {r["office_id"] for r in rows}


async def readable_zones(conn: Conn, offices: Offices, zones: Sequence[str]) -> set[str]:
    """Those of `zones` the caller may read."""
    rows = await conn.fetch(
        f"SELECT id FROM ({_ZONE_QUERY} AND z.id = ANY($2::text[])) AS readable",
        offices,
        list(zones),
    )
    return {r["id"] for r in rows}


async def zone_kinds(conn: Conn, zones: Iterable[str] | None = None) -> dict[str, str]:
    """Each zone's kind by id: of those of `zones` that exist, or of every zone."""
    rows = await conn.fetch(
        "SELECT id, kind FROM zones WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
        None if zones is None else list(set(zones)),
    )
    return {r["id"]: r["kind"] for r in rows}


async def zone_reference_errors(
    conn: Conn,
    offices: Offices,
    *,
    jurisdiction: Sequence[str] = (),
    exclusion: Sequence[str] = (),
    home: str | None = None,
    destinations: Sequence[str] = (),
) -> list[str]:
    """`check_zone_references` against the stored zones the caller (`offices`) may read:
    naming a zone one cannot read must neither work nor tell that it exists."""
    kinds = await zone_kinds(
        conn, [*jurisdiction, *exclusion, *([] if home is None else [home]), *destinations]
    )
    if offices is not None:
        readable = await readable_zones(conn, offices, list(kinds))
        kinds = {zone: kind for zone, kind in kinds.items() if zone in readable}
    return check_zone_references(
        kinds, jurisdiction=jurisdiction, exclusion=exclusion, home=home, destinations=destinations
    )


def check_zone_references(
    kinds: Mapping[str, str],
    *,
    jurisdiction: Sequence[str] = (),
    exclusion: Sequence[str] = (),
    home: str | None = None,
    destinations: Sequence[str] = (),
) -> list[str]:
    """Why these zone references cannot be stored, given the kinds of the zones there are:
    unknown ids, or a zone used in a role other than its kind (an exclusion zone listed as
    jurisdiction would invert the rule). Leave destinations may be of any kind."""
    wanted = [*((z, "jurisdiction") for z in jurisdiction), *((z, "exclusion") for z in exclusion)]
    if home is not None:
        wanted.append((home, "home"))
    errors = []
    for zone, role in wanted:
        if zone not in kinds:
            errors.append(f"{role} zone {zone!r} does not exist")
        elif kinds[zone] != role:
            errors.append(f"zone {zone!r} is a {kinds[zone]} zone and cannot be used as {role}")
    errors.extend(f"destination zone {z!r} does not exist" for z in destinations if z not in kinds)
    return errors


async def supervisees_using_zones(conn: Conn, zones: Sequence[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM supervisees WHERE jurisdiction && $1::text[] OR exclusion && $1::text[]"
        " OR home_zone = ANY($1::text[])"
        " UNION SELECT supervisee_id FROM leaves WHERE destinations && $1::text[]"
        " AND returned_at IS NULL AND ends_at > now()"
        " ORDER BY 1",
        list(zones),
    )
    return [r["id"] for r in rows]


# --- supervisees -------------------------------------------------------------------------

_SUPERVISEE_COLUMNS = (
    "s.id, s.name, s.office_id AS office, s.officer_id AS officer, s.level, s.jurisdiction,"
    " s.exclusion, s.home_zone AS home, s.term_start, s.term_end, s.status, s.updated_at,"
    " ARRAY(SELECT a.device_id FROM device_assignments a"
    " WHERE a.supervisee_id = s.id AND a.until IS NULL ORDER BY a.device_id) AS devices"
)
_IN_SCOPE = "($1::text[] IS NULL OR s.office_id = ANY($1::text[]))"


async def list_supervisees(conn: Conn, offices: Offices, office: str | None = None) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_SUPERVISEE_COLUMNS} FROM supervisees s"
        f" WHERE {_IN_SCOPE} AND ($2::text IS NULL OR s.office_id = $2) ORDER BY s.id",
        offices,
        office,
    )


async def get_supervisee(conn: Conn, offices: Offices, supervisee: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_SUPERVISEE_COLUMNS} FROM supervisees s WHERE {_IN_SCOPE} AND s.id = $2",
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
) -> None:
    """Create or replace every field of a supervisee (HTTP PUT)."""
    await conn.execute(
        "INSERT INTO supervisees (id, name, office_id, officer_id, level, jurisdiction,"
        " exclusion, home_zone, term_start, term_end, status)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, office_id = EXCLUDED.office_id,"
        " officer_id = EXCLUDED.officer_id, level = EXCLUDED.level,"
        " jurisdiction = EXCLUDED.jurisdiction, exclusion = EXCLUDED.exclusion,"
        " home_zone = EXCLUDED.home_zone, term_start = EXCLUDED.term_start,"
        " term_end = EXCLUDED.term_end, status = EXCLUDED.status, updated_at = now()",
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
    )


async def load_supervisees(conn: Conn, people: Sequence[Supervisee]) -> None:
    """Upsert the fields a roster (spec 4.2) carries; officer, term and status, which a
    roster does not know, are kept, and so are a name or office it leaves out. An id must
    not come twice."""
    await conn.execute(
        "INSERT INTO supervisees (id, name, office_id, level, jurisdiction, exclusion, home_zone)"
        # The record's columns are named after the Supervisee fields, as encoded.
        " SELECT id, name, office, level, jurisdiction, exclusion, home"
        " FROM jsonb_to_recordset($1::jsonb) AS s(id text, name text, office text, level text,"
        "  jurisdiction text[], exclusion text[], home text)"
        " ON CONFLICT (id) DO UPDATE SET"
        " name = COALESCE(NULLIF(EXCLUDED.name, ''), supervisees.name),"
        " office_id = COALESCE(EXCLUDED.office_id, supervisees.office_id),"
        " level = EXCLUDED.level, jurisdiction = EXCLUDED.jurisdiction,"
        " exclusion = EXCLUDED.exclusion, home_zone = EXCLUDED.home_zone, updated_at = now()",
        people,
    )


async def active_supervisee_ids(conn: Conn, offices: Offices) -> list[str]:
    rows = await conn.fetch(
        f"SELECT s.id FROM supervisees s WHERE {_IN_SCOPE} AND s.status = 'active' ORDER BY s.id",
        offices,
    )
    return [r["id"] for r in rows]


# --- devices and assignments -------------------------------------------------------------

_DEVICE_QUERY = (
    "SELECT d.id, d.kind, d.owntracks, d.osmand, d.model, a.supervisee_id AS supervisee,"
    " a.since, s.office_id AS office"
    " FROM devices d"
    " LEFT JOIN device_assignments a ON a.device_id = d.id AND a.until IS NULL"
    " LEFT JOIN supervisees s ON s.id = a.supervisee_id"
    f" WHERE {_IN_SCOPE}"
)


async def list_devices(conn: Conn, offices: Offices) -> list[Row]:
    """Unscoped callers see the whole stock; scoped ones the devices their people wear."""
    return await conn.fetch(f"{_DEVICE_QUERY} ORDER BY d.id", offices)


async def get_device(conn: Conn, offices: Offices, device: str) -> Row | None:
    return await conn.fetchrow(f"{_DEVICE_QUERY} AND d.id = $2", offices, device)


_DEVICE_UPSERT = (
    " ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, owntracks = EXCLUDED.owntracks,"
    " osmand = EXCLUDED.osmand,"
    " model = COALESCE(EXCLUDED.model, devices.model)"
)


async def upsert_device(conn: Conn, device: DeviceRef, model: str | None = None) -> None:
    """A model left out keeps the stored one (rosters do not carry models)."""
    await conn.execute(
        "INSERT INTO devices (id, kind, owntracks, osmand, model) VALUES ($1, $2, $3, $4, $5)"
        + _DEVICE_UPSERT,
        device.id,
        device.kind,
        device.owntracks,
        device.osmand,
        model,
    )


async def upsert_devices(conn: Conn, devices: Sequence[DeviceRef]) -> None:
    """`upsert_device` without a model for many in one statement; an id must not come twice."""
    await conn.execute(
        # The record's columns are named after the DeviceRef fields, as encoded.
        "INSERT INTO devices (id, kind, owntracks, osmand)"
        " SELECT * FROM jsonb_to_recordset($1::jsonb)"
        " AS d(id text, kind text, owntracks text, osmand text)" + _DEVICE_UPSERT,
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


async def device_history(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(
        "SELECT a.device_id AS device, d.kind, a.since, a.until FROM device_assignments a"
        " JOIN devices d ON d.id = a.device_id WHERE a.supervisee_id = $1"
        " ORDER BY a.since DESC, a.id DESC",
        supervisee,
    )


# --- leave -------------------------------------------------------------------------------

# A leave is overdue when it was approved, has ended, and the person never reported back
# (销假). A recurring permit has no return to report.
_OVERDUE = (
    "(l.status = 'approved' AND l.kind = 'leave' AND l.returned_at IS NULL AND l.ends_at <= now())"
)
_LEAVE_COLUMNS = (
    'l.id, l.supervisee_id AS supervisee, l.kind, l.starts_at AS "from", l.ends_at AS "to",'
    " l.destinations, l.schedule, l.reason, l.status, l.level, l.warnings, l.applied_by,"
    " l.approved_by, l.refused_by, l.refusal_reason, l.decided_at, l.returned_at,"
    f" l.created_at, {_OVERDUE} AS overdue"
)
LEAVE_STATUSES = ("requested", "approved", "refused", "cancelled", "overdue")


async def list_leaves(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_LEAVE_COLUMNS} FROM leaves l WHERE l.supervisee_id = $1 ORDER BY l.starts_at",
        supervisee,
    )


async def find_leaves(
    conn: Conn, offices: Offices, status: str | None, supervisee: str | None, limit: int
) -> list[Row]:
    """Leave of active supervisees in the caller's offices. `overdue` is not a stored
    status: approved, ended, no return reported; the longest overdue come first."""
    overdue = status == "overdue"
    only_overdue = f" AND {_OVERDUE}" if overdue else ""
    order = "l.ends_at" if overdue else "l.starts_at"
    return await conn.fetch(
        f"SELECT {_LEAVE_COLUMNS} FROM leaves l JOIN supervisees s ON s.id = l.supervisee_id"
        f" WHERE {_IN_SCOPE} AND s.status = 'active' AND ($2::text IS NULL OR l.status = $2)"
        f" AND ($3::text IS NULL OR l.supervisee_id = $3){only_overdue}"
        f" ORDER BY {order}, l.id LIMIT $4",
        offices,
        None if overdue else status,
        supervisee,
        limit,
    )


async def get_leave(conn: Conn, offices: Offices, leave: str, *, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_LEAVE_COLUMNS} FROM leaves l JOIN supervisees s ON s.id = l.supervisee_id"
        f" WHERE {_IN_SCOPE} AND l.id = $2" + (" FOR UPDATE OF l" if lock else ""),
        offices,
        leave,
    )


async def lock_supervisee(conn: Conn, supervisee: str) -> None:
    """Serialise decisions about one person until the transaction ends: two approvals at
    once must not both pass the two-month total."""
    await conn.execute("SELECT 1 FROM supervisees WHERE id = $1 FOR UPDATE", supervisee)


async def approved_leave_windows(
    conn: Conn, supervisee: str, *, besides: str | None = None
) -> list[tuple[datetime, datetime]]:
    """(start, end) of the person's approved leave other than `besides`, for the two-month
    total; recurring permits are not leave days and are left out."""
    rows = await conn.fetch(
        "SELECT starts_at, ends_at FROM leaves WHERE supervisee_id = $1 AND status = 'approved'"
        " AND kind = 'leave' AND id IS DISTINCT FROM $2 ORDER BY starts_at",
        supervisee,
        besides,
    )
    return [(r["starts_at"], r["ends_at"]) for r in rows]


_LEAVE_UPSERT = (
    " ON CONFLICT (id) DO UPDATE SET supervisee_id = EXCLUDED.supervisee_id,"
    " starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,"
    " destinations = EXCLUDED.destinations, reason = EXCLUDED.reason,"
    " status = EXCLUDED.status, approved_by = EXCLUDED.approved_by,"
    " returned_at = EXCLUDED.returned_at, kind = EXCLUDED.kind,"
    " schedule = EXCLUDED.schedule, level = EXCLUDED.level, warnings = EXCLUDED.warnings,"
    " applied_by = EXCLUDED.applied_by, decided_at = CASE WHEN leaves.status = EXCLUDED.status"
    "  THEN leaves.decided_at ELSE EXCLUDED.decided_at END"
)


async def upsert_leave(
    conn: Conn,
    leave: str,
    supervisee: str,
    starts: datetime,
    ends: datetime,
    destinations: Sequence[str],
    *,
    reason: str = "",
    status: str = "approved",
    approved_by: str | None = None,
    returned_at: datetime | None = None,
    kind: str = "leave",
    schedule: Iterable[Window] = (),
    level: str | None = None,
    warnings: Sequence[dict[str, str]] = (),
    applied_by: str | None = None,
) -> Row:
    row = await conn.fetchrow(
        "WITH l AS (INSERT INTO leaves (id, supervisee_id, starts_at, ends_at, destinations,"
        " reason, status, approved_by, returned_at, kind, schedule, level, warnings, applied_by,"
        " decided_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
        "  CASE WHEN $7 = 'approved' THEN now() END)"
        f"{_LEAVE_UPSERT} RETURNING *) SELECT {_LEAVE_COLUMNS} FROM l",
        leave,
        supervisee,
        starts,
        ends,
        list(destinations),
        reason,
        status,
        approved_by,
        returned_at,
        kind,
        schedule_to_json(schedule),
        level,
        list(warnings),
        applied_by,
    )
    assert row is not None
    return row


async def load_leaves(conn: Conn, leaves: Iterable[tuple[str, Leave]]) -> None:
    """Record a roster's (supervisee, leave) pairs as approved, as `upsert_leave` does when
    given no reason, approver or rule check; a leave with weekly hours is a recurring
    permit. A leave id must not come twice."""
    rows = [
        {
            "id": leave.id,
            "supervisee_id": supervisee,
            "starts_at": utc(leave.start),
            "ends_at": utc(leave.end),
            "destinations": leave.destinations,
            "returned_at": None if leave.returned_at is None else utc(leave.returned_at),
            "kind": "permit" if leave.schedule else "leave",
            "schedule": schedule_to_json(leave.schedule),
        }
        for supervisee, leave in leaves
    ]
    # The columns left out (reason, approved_by, level, warnings, applied_by) take their
    # defaults, which are what upsert_leave stores for an approval without them.
    await conn.execute(
        "INSERT INTO leaves (id, supervisee_id, starts_at, ends_at, destinations, returned_at,"
        " kind, schedule, status, decided_at)"
        " SELECT *, 'approved', now() FROM jsonb_to_recordset($1::jsonb) AS l(id text,"
        "  supervisee_id text, starts_at timestamptz, ends_at timestamptz, destinations text[],"
        "  returned_at timestamptz, kind text, schedule jsonb)" + _LEAVE_UPSERT,
        rows,
    )


async def decide_leave(
    conn: Conn,
    leave: str,
    *,
    approved_by: str | None = None,
    refused_by: str | None = None,
    reason: str | None = None,
    level: str,
    warnings: Sequence[dict[str, str]],
) -> Row:
    """Approve (approved_by) or refuse (refused_by, reason) a requested leave, recording
    the rule check made at the decision."""
    row = await conn.fetchrow(
        "WITH l AS (UPDATE leaves SET status = CASE WHEN $2::text IS NULL"
        "  THEN 'refused' ELSE 'approved' END,"
        " approved_by = $2, refused_by = $3, refusal_reason = $4, level = $5, warnings = $6,"
        f" decided_at = now() WHERE id = $1 RETURNING *) SELECT {_LEAVE_COLUMNS} FROM l",
        leave,
        approved_by,
        refused_by,
        reason,
        level,
        list(warnings),
    )
    assert row is not None
    return row


async def return_leave(conn: Conn, leave: str, at: datetime) -> Row | None:
    """销假: record the return once; None when it was already recorded."""
    return await conn.fetchrow(
        "WITH l AS (UPDATE leaves SET returned_at = $2 WHERE id = $1 AND returned_at IS NULL"
        f" RETURNING *) SELECT {_LEAVE_COLUMNS} FROM l",
        leave,
        at,
    )


# --- monitoring orders -------------------------------------------------------------------

_ORDER_END = "COALESCE((o.renewals -> -1 ->> 'until')::date, o.ends_on)"
_ORDER_COLUMNS = (
    "o.id, o.supervisee_id AS supervisee, o.ground, o.approved_by, o.starts_on, o.ends_on,"
    f" {_ORDER_END} AS current_end, o.renewals, o.decided_by, o.created_at, o.ended_at,"
    " o.ended_by, o.end_reason"
)


async def insert_order(
    conn: Conn,
    supervisee: str,
    *,
    ground: str,
    approved_by: str,
    starts_on: date,
    ends_on: date,
    decided_by: str,
) -> Row:
    row = await conn.fetchrow(
        "WITH o AS (INSERT INTO monitoring_orders"
        " (supervisee_id, ground, approved_by, starts_on, ends_on, decided_by)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING *) SELECT {_ORDER_COLUMNS} FROM o",
        supervisee,
        ground,
        approved_by,
        starts_on,
        ends_on,
        decided_by,
    )
    assert row is not None
    return row


async def get_order(conn: Conn, offices: Offices, order: int, *, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} FROM monitoring_orders o"
        f" JOIN supervisees s ON s.id = o.supervisee_id WHERE {_IN_SCOPE} AND o.id = $2"
        + (" FOR UPDATE OF o" if lock else ""),
        offices,
        order,
    )


async def list_orders(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM monitoring_orders o WHERE o.supervisee_id = $1"
        " ORDER BY o.starts_on, o.id",
        supervisee,
    )


async def open_orders(conn: Conn, offices: Offices) -> list[Row]:
    """Orders not removed (解除), of active supervisees in the caller's offices, soonest
    end first; whether each is in force today is the caller's to judge."""
    return await conn.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM monitoring_orders o"
        " JOIN supervisees s ON s.id = o.supervisee_id"
        f" WHERE {_IN_SCOPE} AND s.status = 'active' AND o.ended_at IS NULL"
        f" ORDER BY {_ORDER_END}, o.id",
        offices,
    )


async def overlapping_orders(conn: Conn, supervisee: str, start: date, end: date) -> list[int]:
    """Orders of the person, not removed, whose period meets [start, end]."""
    rows = await conn.fetch(
        "SELECT o.id FROM monitoring_orders o WHERE o.supervisee_id = $1"
        f" AND o.ended_at IS NULL AND o.starts_on <= $3 AND {_ORDER_END} >= $2 ORDER BY o.id",
        supervisee,
        start,
        end,
    )
    return [r["id"] for r in rows]


async def has_active_order(conn: Conn, supervisee: str, day: date) -> bool:
    """Whether an order in force on `day` allows fitting the person with a tag."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT FROM monitoring_orders o WHERE o.supervisee_id = $1"
            f" AND o.ended_at IS NULL AND o.starts_on <= $2 AND {_ORDER_END} >= $2)",
            supervisee,
            day,
        )
    )


async def set_order_renewals(conn: Conn, order: int, renewals: list[dict[str, Any]]) -> Row:
    row = await conn.fetchrow(
        "WITH o AS (UPDATE monitoring_orders SET renewals = $2 WHERE id = $1 RETURNING *)"
        f" SELECT {_ORDER_COLUMNS} FROM o",
        order,
        renewals,
    )
    assert row is not None
    return row


async def end_order(conn: Conn, order: int, ended_by: str, reason: str) -> Row:
    row = await conn.fetchrow(
        "WITH o AS (UPDATE monitoring_orders SET ended_at = now(), ended_by = $2,"
        f" end_reason = $3 WHERE id = $1 RETURNING *) SELECT {_ORDER_COLUMNS} FROM o",
        order,
        ended_by,
        reason,
    )
    assert row is not None
    return row


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


# --- heightened periods ------------------------------------------------------------------

_HEIGHTENED_COLUMNS = (
    'id, name, starts_at AS "from", ends_at AS "to", policy, offices, updated_by, updated_at'
)
# A scoped caller sees the periods that apply to any of its offices: service-wide ones, its
# own, and those of the offices above it.
_HEIGHTENED_IN_SCOPE = (
    "($1::text[] IS NULL OR offices = '{}' OR fencewatch_office_subtrees(offices) && $1::text[])"
)


async def list_heightened(conn: Conn, offices: Offices) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_HEIGHTENED_COLUMNS} FROM heightened_periods WHERE {_HEIGHTENED_IN_SCOPE}"
        " ORDER BY starts_at, id",
        offices,
    )


async def get_heightened(conn: Conn, offices: Offices, period: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_HEIGHTENED_COLUMNS} FROM heightened_periods"
        f" WHERE {_HEIGHTENED_IN_SCOPE} AND id = $2",
        offices,
        period,
    )


async def heightened_exists(conn: Conn, period: str) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT FROM heightened_periods WHERE id = $1)", period)
    )


async def heightened_in_force(conn: Conn, at: datetime, supervisee: str) -> bool:
    """Whether a heightened period covering `at` applies to the person's office."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT FROM heightened_periods h, supervisees s"
            " WHERE s.id = $2 AND h.starts_at <= $1 AND h.ends_at > $1"
            " AND (h.offices = '{}' OR s.office_id = ANY(fencewatch_office_subtrees(h.offices))))",
            at,
            supervisee,
        )
    )


async def put_heightened(
    conn: Conn,
    period: str,
    *,
    name: str,
    starts: datetime,
    ends: datetime,
    policy: dict[str, Any],
    offices: Sequence[str],
    updated_by: str,
) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO heightened_periods (id, name, starts_at, ends_at, policy, offices,"
        " updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, starts_at = EXCLUDED.starts_at,"
        " ends_at = EXCLUDED.ends_at, policy = EXCLUDED.policy, offices = EXCLUDED.offices,"
        " updated_by = EXCLUDED.updated_by, updated_at = now()"
        f" RETURNING {_HEIGHTENED_COLUMNS}",
        period,
        name,
        starts,
        ends,
        policy,
        list(offices),
        updated_by,
    )
    assert row is not None
    return row


async def delete_heightened(conn: Conn, period: str) -> bool:
    return (await conn.execute("DELETE FROM heightened_periods WHERE id = $1", period)) != (
        "DELETE 0"
    )


# --- locations ---------------------------------------------------------------------------


async def track(
    conn: Conn, supervisee: str, start: datetime, end: datetime, limit: int
) -> list[Row]:
    """Fixes with a position in [start, end), oldest first; fixes without one are not
    part of a track."""
    return await conn.fetch(
        "SELECT ts, device_id AS device, seq, lat, lon, acc, src, batt, quality, zone_state"
        " FROM fixes WHERE supervisee_id = $1 AND ts >= $2 AND ts < $3 AND lat IS NOT NULL"
        " ORDER BY ts, device_id, seq LIMIT $4",
        supervisee,
        start,
        end,
        limit,
    )


async def latest_positions(conn: Conn, supervisees: Sequence[str]) -> list[Row]:
    """Each person's newest fix with a position (one index probe per person), with the
    map state the live feed (alerts.feed) would give it: a geofence alert whose condition
    still holds is a breach, otherwise the fix's zone state in the feed's words."""
    return await conn.fetch(
        "SELECT p.id AS supervisee, f.device_id AS device, f.ts, f.lat, f.lon, f.acc, f.batt,"
        " CASE WHEN EXISTS (SELECT FROM alerts a WHERE a.supervisee_id = p.id AND a.active"
        "   AND a.type = ANY($2::text[])) THEN 'breach'"
        "  ELSE COALESCE($3::jsonb ->> f.zone_state, 'unknown') END AS state"
        " FROM unnest($1::text[]) AS p(id) CROSS JOIN LATERAL"
        " (SELECT device_id, ts, lat, lon, acc, batt, zone_state FROM fixes"
        "  WHERE supervisee_id = p.id AND lat IS NOT NULL ORDER BY ts DESC LIMIT 1) f"
        " ORDER BY p.id",
        list(supervisees),
        list(GEOFENCE_RULES),
        MAP_STATES,
    )
