"""API tokens: random, shown once, stored only as their sha256 (`fencewatch token create`,
`fencewatch token revoke`)."""

from __future__ import annotations

import secrets
import sys
from datetime import UTC, datetime, timedelta

import asyncpg

from api.auth import OFFICE_ROLES, REVOKED_CHANNEL, ROLES, hash_token
from fencewatch.config import Settings
from fencewatch.loader import tell_service
from fencewatch.servers import run_with_pool
from storage import repo

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
        if office is not None and await repo.get_office(conn, office) is None:
            raise TokenError(f"office {office!r} does not exist")
        token_id = await repo.insert_token(
            conn, hash_token(token), subject, role, office, datetime.now(UTC) + timedelta(days)
        )
        await repo.audit(
            conn,
            "fencewatch token",
            None,
            "token.create",
            f"token:{token_id}",
            {"subject": subject, "role": role, "office": office, "days": days},
        )
    return token


async def revoke_token(pool: asyncpg.Pool, token: str) -> bool:
    """Revoke it: every request from now on gets 401; open live feeds learn of it through
    `announce_revoked`, or within api.console.RECHECK_S."""
    async with pool.acquire() as conn, conn.transaction():
        token_id = await repo.revoke_token(conn, hash_token(token))
        if token_id is not None:
            await repo.audit(
                conn, "fencewatch token", None, "token.revoke", f"token:{token_id}", {}
            )
    return token_id is not None


def announce_revoked(token: str) -> None:
    """Tell the running service's live feeds (best effort)."""
    tell_service(
        Settings.from_env(),
        REVOKED_CHANNEL,
        hash_token(token).encode(),
        "of the revoke; its open live feeds drop the token at their next check",
    )


def main(role: str, office: str | None, subject: str | None, days: int) -> int:
    """Print a new token on stdout (and nothing else there, so scripts can capture it)."""
    try:
        token = run_with_pool(lambda pool: create_token(pool, role, office, subject, days))
    except TokenError as exc:
        print(f"fencewatch token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def revoke_main(token: str) -> int:
    """Revoke a token at once (its next request gets 401); `-` reads it from stdin, which
    keeps it out of the shell history and the process list. Exit 1 if no live token has it."""
    if token == "-":
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        print("fencewatch token revoke: no token given", file=sys.stderr)
        return 2
    if not run_with_pool(lambda pool: revoke_token(pool, token)):
        print("fencewatch token revoke: no such live token", file=sys.stderr)
        return 1
    announce_revoked(token)
    print("revoked")
    return 0
