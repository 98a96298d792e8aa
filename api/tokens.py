"""API tokens: random, shown once, stored only as their sha256 (`fencewatch token create`,
`fencewatch token revoke`)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import asyncpg

from api.auth import OFFICE_ROLES, ROLES, hash_token
from storage.repo import access as access_repo
from storage.repo import offices as offices_repo

# Lets secret scanners and people recognise a leaked token.
PREFIX = "fw_"


class TokenError(ValueError):
    pass


async def create_token(
    pool: asyncpg.Pool,
    role: str,
    office: str | None = None,
    subject: str | None = None,
    days: int = 365,
) -> str:
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role in OFFICE_ROLES and office is None:
        raise TokenError(f"{role} tokens need an office (--office ID)")
    if days < 1:
        raise TokenError("a token must be valid for at least one day")
    subject = subject or (f"{role}@{office}" if office else role)
    token = PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        if office is not None and await offices_repo.get_office(conn, office) is None:
            raise TokenError(f"office {office!r} does not exist")
        token_id = await access_repo.insert_token(
            conn, hash_token(token), subject, role, office, datetime.now(UTC) + timedelta(days)
        )
        await access_repo.audit(
            conn,
            "fencewatch token",
            None,
            "token.create",
            f"token:{token_id}",
            {"subject": subject, "role": role, "office": office, "days": days},
        )
    return token


async def revoke_token(pool: asyncpg.Pool, token: str) -> bool:
    """Revoke it: every request from now on gets 401; open live feeds learn of it when
    told on REVOKED_CHANNEL (`fencewatch token revoke` does), or within
    api.console.RECHECK_S."""
    async with pool.acquire() as conn, conn.transaction():
        token_id = await access_repo.revoke_token(conn, hash_token(token))
        if token_id is not None:
            await access_repo.audit(
                conn, "fencewatch token", None, "token.revoke", f"token:{token_id}", {}
            )
    return token_id is not None
