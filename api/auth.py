"""Bearer tokens → who is calling, what they may do, and which offices they see.

Roles (spec section 1): the monitoring centre's operator reads everything and manages
zones, devices and supervisees; an officer (司法所) and a supervisor (county bureau) see
their office's subtree and work its alerts and leave; the procuratorate's auditor reads
everything and changes nothing. Any token may carry an office, which limits it to that
office's subtree.

Some decisions belong to a level of the hierarchy, not to a role: leave by its length
(supervision.leave: ≤7 days the justice station, longer the county, longer still the city)
and monitoring orders (the county bureau). A token's level is its office's kind; a
monitoring centre is not a deciding level.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.context import Ctx
from api.errors import ApiError
from storage.repo import access as access_repo
from supervision.leave import LEVEL_NAMES, LEVELS

ROLES = ("operator", "officer", "supervisor", "auditor")
# These roles work one office's people; a token of theirs without an office sees nobody.
OFFICE_ROLES = ("officer", "supervisor")
# A revoked token's hash is published here (api.tokens), so open live feeds drop it at once.
REVOKED_CHANNEL = "fencewatch:tokens:revoked"


class Permission(StrEnum):
    WORK_ALERTS = "work alerts"
    MANAGE = "manage zones, devices and supervisees"
    MANAGE_OFFICES = "manage offices and officers"
    LEAVE = "record leave"
    ORDERS = "decide monitoring orders"
    HEIGHTENED = "manage heightened periods"
    SUSPEND = "ask for or revoke alert suspensions"
    APPROVE_SUSPENSION = "approve alert suspensions"


_GRANTS: dict[Permission, frozenset[str]] = {
    Permission.WORK_ALERTS: frozenset({"operator", "officer", "supervisor"}),
    Permission.MANAGE: frozenset({"operator"}),
    Permission.MANAGE_OFFICES: frozenset({"operator"}),
    Permission.LEAVE: frozenset({"officer", "supervisor"}),
    # 社区矫正法 Art. 29: decided by the county bureau's head, so by a supervisor whose
    # office is at least a county (checked with `require_level`).
    Permission.ORDERS: frozenset({"supervisor"}),
    Permission.HEIGHTENED: frozenset({"operator", "supervisor"}),
    # An officer asks for a suspension window (暂停告警); a supervisor approves it.
    Permission.SUSPEND: frozenset({"officer", "supervisor"}),
    Permission.APPROVE_SUSPENSION: frozenset({"supervisor"}),
}

# Office kind → deciding level (supervision.leave.LEVELS); a centre decides nothing.
OFFICE_LEVELS = {"station": "station", "county": "county", "city": "city"}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    office: str | None
    offices: tuple[str, ...] | None  # the office subtree; None = every office
    level: str | None = None  # the office's deciding level: station | county | city

    def at_least(self, level: str) -> bool:
        return self.level is not None and LEVELS.index(self.level) >= LEVELS.index(level)

    def require_level(self, level: str, what: str) -> None:
        """403 unless the caller's office is at `level` or above, with the reason in both
        languages (the console shows the Chinese)."""
        if not self.at_least(level):
            where = f"office {self.office!r}" if self.office else "a token without an office"
            raise ApiError(
                403,
                f"{what} is decided at the {level} level or above; {where} is not"
                f" （须由{LEVEL_NAMES[level]}或上级决定）",
                {"required_level": level, "your_level": self.level},
            )

    def require(self, permission: Permission) -> None:
        if self.role == "auditor":
            raise ApiError(
                403,
                "auditor tokens are read-only: oversight may read and audit everything"
                " but cannot change anything",
            )
        if self.role not in _GRANTS[permission]:
            allowed = sorted(_GRANTS[permission])
            raise ApiError(
                403, f"{self.role} tokens may not {permission}", {"allowed_roles": allowed}
            )

    def covers(self, office: str | None) -> bool:
        return self.offices is None or office in self.offices


_bearer = HTTPBearer(
    auto_error=False, description="a token from `fencewatch token create --role ROLE`"
)


async def authenticate(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    async with ctx.pool.acquire() as conn:
        row = await access_repo.token_by_hash(conn, hash_token(credentials.credentials))
        if row is None:
            raise ApiError(401, "unknown token")
        if row["revoked_at"] is not None:
            raise ApiError(401, "token revoked")
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
            raise ApiError(401, "token expired")
        office = row["office"]
        if office is not None:
            offices: tuple[str, ...] | None = tuple(await access_repo.office_subtree(conn, office))
        else:
            offices = () if row["role"] in OFFICE_ROLES else None
    return Principal(
        subject=row["subject"],
        role=row["role"],
        office=office,
        offices=offices,
        level=OFFICE_LEVELS.get(row["office_kind"] or ""),
    )


User = Annotated[Principal, Depends(authenticate)]


def _granted(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    async def check(user: User) -> Principal:
        user.require(permission)
        return user

    return check


# As dependencies, so a forbidden request is refused before its body is even validated.
AlertWorker = Annotated[Principal, Depends(_granted(Permission.WORK_ALERTS))]
Manager = Annotated[Principal, Depends(_granted(Permission.MANAGE))]
OfficeManager = Annotated[Principal, Depends(_granted(Permission.MANAGE_OFFICES))]
LeaveRecorder = Annotated[Principal, Depends(_granted(Permission.LEAVE))]
OrderDecider = Annotated[Principal, Depends(_granted(Permission.ORDERS))]
HeightenedManager = Annotated[Principal, Depends(_granted(Permission.HEIGHTENED))]
Suspender = Annotated[Principal, Depends(_granted(Permission.SUSPEND))]
SuspensionApprover = Annotated[Principal, Depends(_granted(Permission.APPROVE_SUSPENSION))]
