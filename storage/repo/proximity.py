"""No-contact orders (禁止接触), protected persons (被保护人) and the gathering rule (聚集):
geofence.together's rules."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from geofence.model import DeviceRef, Gathering, NoContact, Protection
from storage.db import Conn, Row


async def known_supervisees(conn: Conn, ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch("SELECT id FROM supervisees WHERE id = ANY($1::text[])", list(ids))
    return {r["id"] for r in rows}


async def upsert_no_contact(conn: Conn, orders: Sequence[NoContact]) -> None:
    if not orders:
        return
    await conn.execute(
        "INSERT INTO no_contact_orders (id, people, distance_m, confirm_s)"
        " SELECT o.id, ARRAY(SELECT jsonb_array_elements_text(o.people::jsonb)), o.distance_m,"
        " o.confirm_s FROM unnest($1::text[], $2::text[], $3::float8[], $4::int[])"
        " AS o(id, people, distance_m, confirm_s)"
        " ON CONFLICT (id) DO UPDATE SET people = EXCLUDED.people,"
        " distance_m = EXCLUDED.distance_m, confirm_s = EXCLUDED.confirm_s, updated_at = now()",
        [o.id for o in orders],
        # JSON text: a list of lists would be taken for a two-dimensional array
        [msgspec.json.encode(o.people).decode() for o in orders],
        [o.distance_m for o in orders],
        [o.confirm_s for o in orders],
    )


async def set_gathering(conn: Conn, rule: Gathering) -> None:
    await conn.execute(
        "INSERT INTO gathering_rule (size, radius_m, hold_s) VALUES ($1, $2, $3)"
        " ON CONFLICT (singleton) DO UPDATE SET size = EXCLUDED.size,"
        " radius_m = EXCLUDED.radius_m, hold_s = EXCLUDED.hold_s, updated_at = now()",
        rule.size,
        rule.radius_m,
        rule.hold_s,
    )


async def devices_in_use(conn: Conn, phones: Sequence[DeviceRef]) -> set[str]:
    """Of `phones`, the ids of those a supervisee's device (registered in `devices`) shares
    an id, an OwnTracks topic or an OsmAnd id with: their messages would be taken for the
    protected person's."""
    rows = await conn.fetch(
        "SELECT p.id FROM unnest($1::text[], $2::text[], $3::text[]) AS p(id, owntracks, osmand)"
        " WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = p.id OR d.owntracks = p.owntracks"
        " OR d.osmand = p.osmand)",
        [d.id for d in phones],
        [d.owntracks for d in phones],
        [d.osmand for d in phones],
    )
    return {r["id"] for r in rows}


async def upsert_protected(conn: Conn, people: Sequence[Protection]) -> None:
    for p in people:
        await conn.execute(
            "INSERT INTO protected_persons (id, supervisee_id, device_id, owntracks, osmand,"
            " distance_m, confirm_s, sms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (id) DO UPDATE SET supervisee_id = EXCLUDED.supervisee_id,"
            " device_id = EXCLUDED.device_id, owntracks = EXCLUDED.owntracks,"
            " osmand = EXCLUDED.osmand, distance_m = EXCLUDED.distance_m,"
            " confirm_s = EXCLUDED.confirm_s, sms = EXCLUDED.sms, updated_at = now()",
            p.id,
            p.supervisee,
            p.device.id,
            p.device.owntracks,
            p.device.osmand,
            p.distance_m,
            p.confirm_s,
            p.sms,
        )


async def protected_sms(conn: Conn, protection: str) -> str | None:
    """The protected person's number for a warning, if they gave one."""
    number: str | None = await conn.fetchval(
        "SELECT sms FROM protected_persons WHERE id = $1", protection
    )
    return number


async def purge_protected(conn: Conn, protection: str) -> int:
    """End a protection: the person and their phone go, and with them every copy of where
    they were (the `protected` evidence of its alerts); returns the alerts purged."""
    purged = await conn.execute(
        "UPDATE alerts SET detail = detail - 'protected' || '{\"protected_purged\": true}'"
        " WHERE type = 'protected_proximity' AND detail->>'order' = $1"
        " AND detail ? 'protected'",
        protection,
    )
    await conn.execute("DELETE FROM protected_persons WHERE id = $1", protection)
    return int(purged.split()[-1])


async def purge_protected_of(conn: Conn, supervisee: str) -> dict[str, int]:
    """End every protection from `supervisee` (their supervision is over): protection id →
    alerts purged of the protected person's position."""
    ids = await conn.fetch(
        "SELECT id FROM protected_persons WHERE supervisee_id = $1 ORDER BY id", supervisee
    )
    return {r["id"]: await purge_protected(conn, r["id"]) for r in ids}


async def load_protected(conn: Conn) -> list[Protection]:
    rows = await conn.fetch(
        "SELECT id, supervisee_id, device_id, owntracks, osmand, distance_m, confirm_s, sms"
        " FROM protected_persons ORDER BY id"
    )
    return [
        Protection(
            r["id"],
            r["supervisee_id"],
            DeviceRef(r["device_id"], "phone", owntracks=r["owntracks"], osmand=r["osmand"]),
            r["distance_m"],
            r["confirm_s"],
            r["sms"],
        )
        for r in rows
    ]


async def load(conn: Conn) -> tuple[list[NoContact], Gathering | None]:
    orders = [
        NoContact(r["id"], tuple(r["people"]), r["distance_m"], r["confirm_s"])
        for r in await conn.fetch(
            "SELECT id, people, distance_m, confirm_s FROM no_contact_orders ORDER BY id"
        )
    ]
    row = await conn.fetchrow("SELECT size, radius_m, hold_s FROM gathering_rule")
    rule = Gathering(row["size"], row["radius_m"], row["hold_s"]) if row else None
    return orders, rule


async def supervisee_offices(conn: Conn, ids: Sequence[str]) -> dict[str, str | None]:
    """Each of `ids` that is a supervisee, with their office."""
    rows = await conn.fetch(
        "SELECT id, office_id FROM supervisees WHERE id = ANY($1::text[])", list(ids)
    )
    return {r["id"]: r["office_id"] for r in rows}


_ORDER = "SELECT id, people, distance_m, confirm_s, updated_at FROM no_contact_orders"


async def get_no_contact(conn: Conn, order: str, lock: bool = False) -> Row | None:
    return await conn.fetchrow(f"{_ORDER} WHERE id = $1{' FOR UPDATE' if lock else ''}", order)


async def no_contact_of(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(f"{_ORDER} WHERE $1 = ANY(people) ORDER BY id", supervisee)


async def name_protected(conn: Conn, protection: str, name: str | None) -> None:
    """What officers call them: kept apart from `upsert_protected`, which the roster loader
    shares and whose `Protection` is the engine's, which has no use for a name."""
    await conn.execute("UPDATE protected_persons SET name = $2 WHERE id = $1", protection, name)


async def end_no_contact(conn: Conn, order: str) -> None:
    await conn.execute("DELETE FROM no_contact_orders WHERE id = $1", order)


_PROTECTED = (
    "SELECT id, supervisee_id AS supervisee, name, device_id, owntracks, osmand, distance_m,"
    " confirm_s, sms, updated_at FROM protected_persons"
)


async def get_protected(conn: Conn, protection: str, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        f"{_PROTECTED} WHERE id = $1{' FOR UPDATE' if lock else ''}", protection
    )


async def protected_of(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(f"{_PROTECTED} WHERE supervisee_id = $1 ORDER BY id", supervisee)
