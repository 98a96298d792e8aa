"""What the API needs from the process that hosts it, passed in rather than looked up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import Depends, Request
from redis.asyncio import Redis

from api.probe import HealthCheck
from fencewatch.config import Settings

# Supervisee ids whose rules changed, or None for "reload everyone".
RulesChanged = Callable[[list[str] | None], Awaitable[None]]


@dataclass(frozen=True)
class ApiContext:
    pool: asyncpg.Pool
    redis: Redis
    health: HealthCheck
    rules_changed: RulesChanged
    # The service's settings (fencewatch.config); an API built without them, as in tests,
    # runs on the defaults.
    settings: Settings = field(default_factory=Settings)
    # Set when the hosting service stops: live feeds end then rather than hold it up.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def timezone(self) -> ZoneInfo:
        """The service's time zone: calendar days and months are local."""
        return ZoneInfo(self.settings.timezone)


def _context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(_context)]
