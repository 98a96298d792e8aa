"""The asyncpg pool, with jsonb decoded by msgspec and the schema migrated on open."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from storage.migrate import migrate

# A connection, whether opened directly or borrowed from the pool.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# The database cannot be reached right now (down, restarting, shutting down), or the
# connection broke mid-operation (asyncpg then reports the state it was left in as an
# internal client error): wait and retry on another connection (a repeated commit stores
# no fix, event or alert twice).
UNAVAILABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)

# Anything the database may answer a background job with: logged, and the job tries again.
FAILED = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

_encode = msgspec.json.encode
_decode = msgspec.json.decode


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: _encode(v).decode(), decoder=_decode, schema="pg_catalog"
        )


async def open_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Connect, migrate the schema, and return a pool whose connections speak jsonb."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None
    return pool
