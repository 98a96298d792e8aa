"""Names of the Redis pub/sub channels the service talks on.

Pub/sub is global to a Redis server, not kept per database number like keys are, so two
deployments (or two test runs) sharing one Redis on different database numbers would hear
each other's alerts, positions, rule reloads and token revokes. Every channel therefore
carries the database number of the client that publishes or subscribes."""

from __future__ import annotations

from typing import Any


def channel(client: Any, name: str) -> str:
    """`name` scoped to the database `client` (a redis or redis.asyncio client) is on."""
    return f"{name}:{client.connection_pool.connection_kwargs.get('db', 0)}"
