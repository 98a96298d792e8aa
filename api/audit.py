"""The audit trail (spec 2: every read of location data and every change is logged)."""

from __future__ import annotations

from typing import Any

from api.auth import Principal
from storage.db import Conn
from storage.repo import access as access_repo


async def record(
    conn: Conn,
    who: Principal,
    action: str,
    obj: str,
    detail: dict[str, Any] | None = None,
    *,
    supervisee: str | None = None,
) -> None:
    """Write in the caller's transaction, so a change and its audit row commit together;
    `supervisee` names whose data it is when `obj` does not (storage.repo.access.audit)."""
    await access_repo.audit(
        conn, who.subject, who.role, action, obj, detail or {}, supervisee=supervisee
    )
