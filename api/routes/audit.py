"""The audit log, for oversight: who read or changed what, when, and why.

The procuratorate's auditor reads all of it; a supervisor (county bureau) reads the rows
about their own offices' people and offices. Officers and operators, whose reads are what
the log records, do not read it. The log is append-only (storage migration 0004 refuses
UPDATE, DELETE and TRUNCATE), and reading it is itself logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from api import audit
from api.auth import Principal, User
from api.context import Ctx
from api.errors import ApiError
from api.fields import UtcTime
from storage.db import Conn, Row

router = APIRouter(tags=["audit"])

READERS = ("auditor", "supervisor")
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1  # bigserial
MAX_TEXT = 500


class AuditEntry(BaseModel):
    id: int
    at: UtcTime
    actor: str = Field(description="a token's subject, or the command or job that acted")
    role: str | None = Field(description="the token's role; null for commands and jobs")
    action: str = Field(description="e.g. location.track, alert.resolved, retention.purge")
    object: str = Field(description="what it was done to, e.g. supervisee:P1, alert:12")
    supervisee: str | None = Field(description="whose data the row is about, when one person's")
    office: str | None = Field(description="the office the row belongs to, for scoping")
    detail: dict[str, Any] = Field(description="what else was recorded: range, counts, reason")


class AuditList(BaseModel):
    items: list[AuditEntry]
    next_before: int | None = Field(
        None, description="pass as `before` for the next (older) page; null on the last page"
    )


def require_reader(user: Principal) -> None:
    if user.role not in READERS:
        raise ApiError(
            403,
            f"{user.role} tokens may not read the audit log; the auditor (procuratorate)"
            " and supervisors may",
            {"allowed_roles": list(READERS)},
        )


@router.get("/audit", response_model=AuditList)
async def list_audit(
    ctx: Ctx,
    user: User,
    actor: Annotated[str | None, Query(description="exactly this actor")] = None,
    action: Annotated[
        str | None,
        Query(description="exactly this action, or a prefix ending in '*' (`location.*`)"),
    ] = None,
    object: Annotated[str | None, Query(description="exactly this object")] = None,
    supervisee: Annotated[str | None, Query(description="rows about this person")] = None,
    start: Annotated[
        AwareDatetime | None, Query(alias="from", description="at or after; ISO-8601 with offset")
    ] = None,
    end: Annotated[
        AwareDatetime | None, Query(alias="to", description="before; ISO-8601 with offset")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only rows with a smaller id")
    ] = None,
) -> AuditList:
    """Newest first, within the caller's offices."""
    require_reader(user)
    texts = {"actor": actor, "action": action, "object": object, "supervisee": supervisee}
    for name, value in texts.items():
        _check_text(name, value)
    if start is not None and end is not None and end <= start:
        raise ApiError(422, "'to' must be after 'from'")
    filters = {
        "actor": actor,
        "action": action,
        "object": object,
        "supervisee": supervisee,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "before": before,
    }
    async with ctx.pool.acquire() as conn:
        rows = await query(
            conn,
            user.offices,
            actor=actor,
            action=action,
            obj=object,
            supervisee=supervisee,
            start=start,
            end=end,
            before=before,
            limit=limit,
        )
        given = {k: v for k, v in filters.items() if v is not None}
        await audit.record(conn, user, "audit.read", "audit_log", {"count": len(rows), **given})
    items = [_entry(r) for r in rows]
    return AuditList(items=items, next_before=items[-1].id if len(items) == limit else None)


def _check_text(name: str, value: str | None) -> None:
    """PostgreSQL text holds no NUL; nothing in the log is that long."""
    if value is not None and ("\x00" in value or len(value) > MAX_TEXT):
        raise ApiError(422, f"invalid request: {name}: no NUL characters, at most {MAX_TEXT}")


def _entry(r: Row) -> AuditEntry:
    return AuditEntry(
        id=r["id"],
        at=r["at"],
        actor=r["actor"],
        role=r["role"],
        action=r["action"],
        object=r["object"],
        supervisee=r["supervisee_id"],
        office=r["office_id"],
        detail=r["detail"],
    )


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def query(
    conn: Conn,
    offices: tuple[str, ...] | None,
    *,
    actor: str | None = None,
    action: str | None = None,
    obj: str | None = None,
    supervisee: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[Row]:
    """The audit rows matching every given filter, newest first; `offices` None = all."""
    where: list[str] = []
    args: list[Any] = []

    def add(clause: str, value: Any) -> None:
        args.append(value)
        where.append(clause.replace("?", f"${len(args)}"))

    if offices is not None:
        add("office_id = ANY(?::text[])", list(offices))
    if actor is not None:
        add("actor = ?", actor)
    if action is not None:
        if action.endswith("*"):
            add("action LIKE ?", _like_prefix(action[:-1]))
        else:
            add("action = ?", action)
    if obj is not None:
        add("object = ?", obj)
    if supervisee is not None:
        add("supervisee_id = ?", supervisee)
    if start is not None:
        add("at >= ?", start)
    if end is not None:
        add("at < ?", end)
    if before is not None:
        add("id < ?", before)
    args.append(limit)
    sql = (
        "SELECT id, at, actor, role, action, object, supervisee_id, office_id, detail"
        " FROM audit_log"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id DESC LIMIT ${len(args)}"
    )
    return list(await conn.fetch(sql, *args))
