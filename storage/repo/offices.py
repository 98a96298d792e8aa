"""Offices (centre → city → county bureau → justice station) and their officers."""

from __future__ import annotations

from storage.db import Conn, Row
from storage.repo import Offices

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
