"""Engine snapshots, per shard: written behind, read back when a shard is taken
(ingest.restore, which judges again what was committed after them).

A snapshot records a shard's state with the last fix and event it had judged. Each shard
keeps its newest few; a previous layout's (a different number of shards) are kept until
every shard of the new one has a snapshot of its own."""

from __future__ import annotations

from typing import Protocol

import asyncpg

from storage.db import Conn


class Shard(Protocol):
    """Which shard of how many (ingest.shards.Shard)."""

    @property
    def index(self) -> int: ...

    @property
    def count(self) -> int: ...


KEEP = 3


async def save(conn: Conn, shard: Shard, state: bytes, last_rid: int, last_event_rid: int) -> None:
    """`state` (Engine.snapshot) as it was when fixes up to `last_rid` and events up to
    `last_event_rid` were committed."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO engine_snapshots (shard, shards, last_rid, last_event_rid, state)"
            " VALUES ($1, $2, $3, $4, $5)",
            shard.index,
            shard.count,
            last_rid,
            last_event_rid,
            state,
        )
        await conn.execute(
            "DELETE FROM engine_snapshots WHERE shard = $1 AND shards = $2 AND id NOT IN"
            " (SELECT id FROM engine_snapshots WHERE shard = $1 AND shards = $2"
            "  ORDER BY id DESC LIMIT $3)",
            shard.index,
            shard.count,
            KEEP,
        )
        # An earlier layout is needed until every shard of this one has a snapshot.
        await conn.execute(
            "DELETE FROM engine_snapshots WHERE shards <> $1 AND $1 ="
            " (SELECT count(DISTINCT shard) FROM engine_snapshots WHERE shards = $1)",
            shard.count,
        )


async def latest(conn: Conn, shard: Shard) -> list[asyncpg.Record]:
    """(last_rid, last_event_rid, state) of the shard's newest snapshot; without one of its
    own, of every shard's newest in the previous layout (ingest.restore keeps the shard's
    own people of them)."""
    own = await conn.fetch(
        "SELECT last_rid, last_event_rid, state FROM engine_snapshots"
        " WHERE shard = $1 AND shards = $2 ORDER BY id DESC LIMIT 1",
        shard.index,
        shard.count,
    )
    if own:
        return own
    return await conn.fetch(
        "SELECT DISTINCT ON (shard) last_rid, last_event_rid, state FROM engine_snapshots"
        " WHERE shards = (SELECT shards FROM engine_snapshots WHERE shards <> $1"
        "  ORDER BY id DESC LIMIT 1)"
        " ORDER BY shard, id DESC",
        shard.count,
    )
