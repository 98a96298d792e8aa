"""What the API needs from the process that hosts it, passed in rather than looked up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from redis.asyncio import Redis

# Component name (ingest, database, redis, broker) → reachable.
HealthCheck = Callable[[], Awaitable[dict[str, bool]]]
# Supervisee ids whose rules changed, or None for "reload everyone".
RulesChanged = Callable[[list[str] | None], Awaitable[None]]


@dataclass(frozen=True)
class ApiContext:
    pool: asyncpg.Pool
    redis: Redis
    health: HealthCheck
    rules_changed: RulesChanged


def _context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(_context)]
