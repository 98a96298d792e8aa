"""API tokens (stored as their hashes), the office subtree a token's holder may see, and
the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.db import Conn, Row


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
    conn: Conn,
    actor: str,
    role: str | None,
    action: str,
    obj: str,
    detail: dict[str, Any],
    *,
    supervisee: str | None = None,
) -> None:
    """`supervisee`: whose data the row is about, for an object the log's trigger cannot
    trace to a person by itself (migration 0004's audit_log_scope)."""
    await conn.execute(
        "INSERT INTO audit_log (actor, role, action, object, detail, supervisee_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        actor,
        role,
        action,
        obj,
        detail,
        supervisee,
    )
