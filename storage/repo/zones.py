"""Zones as parsed (geofence.zones) and as they came, who may read each, and what still
uses one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from geofence.model import ZoneDef
from geofence.zones import schedule_to_json
from storage.db import Conn, Row
from storage.repo import Offices

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
    "   AND (z.id = ANY(s.jurisdiction) OR z.id = ANY(s.exclusion) OR z.id = s.home_zone"
    "    OR s.workplace = to_jsonb(z.id))))"
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
        " ('home', s.home_zone IS NOT DISTINCT FROM $1),"
        " ('workplace', s.workplace = to_jsonb($1::text))) AS r(role, used) WHERE r.used"
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
        " OR s.workplace = to_jsonb($1::text)"
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
    workplace: str | None = None,
) -> list[str]:
    """`check_zone_references` against the stored zones the caller (`offices`) may read:
    naming a zone one cannot read must neither work nor tell that it exists."""
    named = [home, workplace]
    kinds = await zone_kinds(
        conn, [*jurisdiction, *exclusion, *(z for z in named if z is not None), *destinations]
    )
    if offices is not None:
        readable = await readable_zones(conn, offices, list(kinds))
        kinds = {zone: kind for zone, kind in kinds.items() if zone in readable}
    return check_zone_references(
        kinds,
        jurisdiction=jurisdiction,
        exclusion=exclusion,
        home=home,
        destinations=destinations,
        workplace=workplace,
    )


def check_zone_references(
    kinds: Mapping[str, str],
    *,
    jurisdiction: Sequence[str] = (),
    exclusion: Sequence[str] = (),
    home: str | None = None,
    destinations: Sequence[str] = (),
    workplace: str | None = None,
) -> list[str]:
    """Why these zone references cannot be stored, given the kinds of the zones there are:
    unknown ids, or a zone used in a role other than its kind (an exclusion zone listed as
    jurisdiction would invert the rule). Leave destinations and a workplace may be of any
    kind."""
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
    if workplace is not None and workplace not in kinds:
        errors.append(f"workplace zone {workplace!r} does not exist")
    return errors


async def supervisees_using_zones(conn: Conn, zones: Sequence[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM supervisees WHERE jurisdiction && $1::text[] OR exclusion && $1::text[]"
        " OR home_zone = ANY($1::text[]) OR workplace #>> '{}' = ANY($1::text[])"
        " UNION SELECT supervisee_id FROM leaves WHERE destinations && $1::text[]"
        " AND returned_at IS NULL AND ends_at > now()"
        " ORDER BY 1",
        list(zones),
    )
    return [r["id"] for r in rows]
