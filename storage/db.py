"""The asyncpg pool, with jsonb decoded by msgspec and the schema migrated on open."""

from __future__ import annotations

import asyncpg
import msgspec

from storage.migrate import migrate

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
