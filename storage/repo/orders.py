"""Monitoring orders (使用电子定位装置决定) with their renewals and removal, and heightened
periods (重大节假日、重要会议期间)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from storage.db import Conn, Row
from storage.repo import IN_SCOPE, Offices

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
        f" JOIN supervisees s ON s.id = o.supervisee_id WHERE {IN_SCOPE} AND o.id = $2"
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
        f" WHERE {IN_SCOPE} AND s.status = 'active' AND o.ended_at IS NULL"
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
