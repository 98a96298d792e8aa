"""Leave (外出) and recurring permits: requests, decisions, returns (销假), overdue leave."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from fencewatch.timefmt import utc
from geofence.model import Leave, Window
from geofence.zones import schedule_to_json
from storage.db import Conn, Row
from storage.repo import IN_SCOPE, Offices

# A leave is overdue when it was approved, has ended, and the person never reported back
# (销假). A recurring permit has no return to report.
_OVERDUE = (
    "(l.status = 'approved' AND l.kind = 'leave' AND l.returned_at IS NULL AND l.ends_at <= now())"
)
# Statuses a list can ask for that are not stored but follow from the clock: the filter and
# the order (most pressing first) of each. Active: approved, begun, not over, not reported
# back; upcoming: approved and not begun.
_BY_CLOCK = {
    "overdue": (_OVERDUE, "l.ends_at"),
    "active": (
        "(l.status = 'approved' AND l.returned_at IS NULL AND l.starts_at <= now()"
        " AND l.ends_at > now())",
        "l.ends_at",
    ),
    "upcoming": ("(l.status = 'approved' AND l.starts_at > now())", "l.starts_at"),
}


_LEAVE_COLUMNS = (
    'l.id, l.supervisee_id AS supervisee, l.kind, l.starts_at AS "from", l.ends_at AS "to",'
    " l.destinations, l.schedule, l.reason, l.status, l.level, l.warnings, l.applied_by,"
    " l.approved_by, l.refused_by, l.refusal_reason, l.decided_at, l.returned_at,"
    f" l.created_at, {_OVERDUE} AS overdue"
)


async def list_leaves(conn: Conn, supervisee: str) -> list[Row]:
    return await conn.fetch(
        f"SELECT {_LEAVE_COLUMNS} FROM leaves l WHERE l.supervisee_id = $1 ORDER BY l.starts_at",
        supervisee,
    )


async def find_leaves(
    conn: Conn, offices: Offices, status: str | None, supervisee: str | None, limit: int
) -> list[Row]:
    """Leave of active supervisees in the caller's offices. `overdue`, `active` and
    `upcoming` are not stored statuses but read off the clock (_BY_CLOCK); the longest
    overdue, the soonest back and the soonest to leave come first."""
    by_clock = _BY_CLOCK.get(status or "")
    only = f" AND {by_clock[0]}" if by_clock else ""
    order = by_clock[1] if by_clock else "l.starts_at"
    return await conn.fetch(
        f"SELECT {_LEAVE_COLUMNS} FROM leaves l JOIN supervisees s ON s.id = l.supervisee_id"
        f" WHERE {IN_SCOPE} AND s.status = 'active' AND ($2::text IS NULL OR l.status = $2)"
        f" AND ($3::text IS NULL OR l.supervisee_id = $3){only}"
        f" ORDER BY {order}, l.id LIMIT $4",
        offices,
        None if by_clock else status,
        supervisee,
        limit,
    )


async def get_leave(conn: Conn, offices: Offices, leave: str, *, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_LEAVE_COLUMNS} FROM leaves l JOIN supervisees s ON s.id = l.supervisee_id"
        f" WHERE {IN_SCOPE} AND l.id = $2" + (" FOR UPDATE OF l" if lock else ""),
        offices,
        leave,
    )


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
