"""Suspension windows (暂停告警): requests, decisions, revocation, and the one in force."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.db import Conn, Row
from storage.repo import IN_SCOPE, Offices

_COLUMNS = (
    "u.id, u.supervisee_id AS supervisee, u.types, u.reason, u.reason_text,"
    ' u.starts_at AS "from", u.ends_at AS "to", u.status, u.requested_by, u.approved_by,'
    " u.refused_by, u.refusal_reason, u.decided_at, u.revoked_by, u.revoked_at,"
    " u.revoke_reason, u.created_at,"
    " (u.status = 'approved' AND u.starts_at <= now() AND u.ends_at > now()) AS in_force"
)


async def insert_suspension(
    conn: Conn,
    suspension: str,
    supervisee: str,
    *,
    types: Sequence[str],
    reason: str,
    reason_text: str,
    starts: datetime,
    ends: datetime,
    requested_by: str,
) -> Row:
    row = await conn.fetchrow(
        "WITH u AS (INSERT INTO alert_suspensions (id, supervisee_id, types, reason,"
        " reason_text, starts_at, ends_at, requested_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        f" RETURNING *) SELECT {_COLUMNS} FROM u",
        suspension,
        supervisee,
        list(types),
        reason,
        reason_text,
        starts,
        ends,
        requested_by,
    )
    assert row is not None
    return row


async def list_suspensions(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_COLUMNS} FROM alert_suspensions u WHERE u.supervisee_id = $1"
        " ORDER BY u.starts_at DESC, u.id",
        supervisee,
    )


async def find_suspensions(
    conn: Conn, offices: Offices, status: str | None, limit: int
) -> list[Row]:
    """Suspensions of active supervisees in the caller's offices; `in_force` is not a
    stored status: approved, begun and not yet ended."""
    in_force = status == "in_force"
    return await conn.fetch(
        f"SELECT {_COLUMNS} FROM alert_suspensions u JOIN supervisees s ON s.id = u.supervisee_id"
        f" WHERE {IN_SCOPE} AND s.status = 'active' AND ($2::text IS NULL OR u.status = $2)"
        + (" AND u.starts_at <= now() AND u.ends_at > now()" if in_force else "")
        + " ORDER BY u.starts_at DESC, u.id LIMIT $3",
        offices,
        "approved" if in_force else status,
        limit,
    )


async def get_suspension(
    conn: Conn, offices: Offices, suspension: str, *, lock: bool = False
) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM alert_suspensions u JOIN supervisees s ON s.id = u.supervisee_id"
        f" WHERE {IN_SCOPE} AND u.id = $2" + (" FOR UPDATE OF u" if lock else ""),
        offices,
        suspension,
    )


async def decide_suspension(
    conn: Conn,
    suspension: str,
    *,
    approved_by: str | None = None,
    refused_by: str | None = None,
    reason: str | None = None,
) -> Row:
    """Approve (approved_by) or refuse (refused_by, reason) a requested suspension."""
    row = await conn.fetchrow(
        "WITH u AS (UPDATE alert_suspensions SET status = CASE WHEN $2::text IS NULL"
        "  THEN 'refused' ELSE 'approved' END,"
        " approved_by = $2, refused_by = $3, refusal_reason = $4, decided_at = now()"
        f" WHERE id = $1 RETURNING *) SELECT {_COLUMNS} FROM u",
        suspension,
        approved_by,
        refused_by,
        reason,
    )
    assert row is not None
    return row


async def revoke_suspension(conn: Conn, suspension: str, revoked_by: str, reason: str) -> Row:
    """End it now (or withdraw a request); the alerts it holds are due for release now."""
    row = await conn.fetchrow(
        "WITH u AS (UPDATE alert_suspensions SET status = 'revoked', revoked_by = $2,"
        " revoked_at = now(), revoke_reason = $3 WHERE id = $1 RETURNING *)"
        f" SELECT {_COLUMNS} FROM u",
        suspension,
        revoked_by,
        reason,
    )
    assert row is not None
    await conn.execute(
        "UPDATE alerts SET held_until = now() WHERE NOT routed AND hold->>'suspension' = $1",
        suspension,
    )
    return row


async def in_force(conn: Conn, supervisee: str, alert_type: str, at: datetime | None) -> Row | None:
    """The approved suspension holding the person's alerts of `alert_type` at `at` (None:
    the transaction's time); of several, the one that ends last."""
    return (await in_force_each(conn, [(supervisee, alert_type)], at))[0]


async def in_force_each(
    conn: Conn, asked: Sequence[tuple[str, str]], at: datetime | None
) -> list[Row | None]:
    """`in_force` for each (supervisee, alert type) of `asked`, in one query."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (q.i) q.i, s.id, s.reason, s.reason_text, s.ends_at"
        " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(supervisee, type, i)"
        " JOIN alert_suspensions s ON s.supervisee_id = q.supervisee AND s.status = 'approved'"
        " AND s.starts_at <= COALESCE($3, now()) AND s.ends_at > COALESCE($3, now())"
        " AND (s.types = '{}' OR q.type = ANY(s.types)) ORDER BY q.i, s.ends_at DESC, s.id",
        [a[0] for a in asked],
        [a[1] for a in asked],
        at,
    )
    found: list[Row | None] = [None] * len(asked)
    for r in rows:
        found[r["i"] - 1] = r
    return found
