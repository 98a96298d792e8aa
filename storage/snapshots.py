"""Engine snapshots, per shard: written behind, read back when a shard is taken
(ingest.restore, which judges again what was committed after them).

A snapshot records a shard's state with the last fix and event it had judged. Each shard
keeps its newest few; a previous layout's (a different number of shards) are kept until
every shard of the new one has a snapshot of its own.

The state is stored in parts of PART devices or people (a msgpack array of encoded
EngineStates), encoded and decoded one part at a time with the event loop let go between
them: a 100,000-tag shard is some 50 MB of state, which in one piece would hold the loop —
the worker's other shards, its API and its clock — for as long as it takes (up to seconds
on a slow box, in a take-over). A snapshot in one piece (before parts) still reads."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import asyncpg
import msgspec

from geofence.state import EngineState
from storage.db import Conn

PART = 5000
# COPY's binary format (PostgreSQL's COPY page): signature, flags, header extension; the
# end of the data; what a snapshot is sent in.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_END = struct.pack("!h", -1)
_PIECE = 1 << 20
_ENCODER = msgspec.msgpack.Encoder()
_STATE = msgspec.msgpack.Decoder(EngineState)
_PARTS = msgspec.msgpack.Decoder(list[bytes])
# How a msgpack array starts (the parts); an EngineState in one piece is a map.
_ARRAY = {bytes([b]) for b in range(0x90, 0xA0)} | {b"\xdc", b"\xdd"}


class Shard(Protocol):
    """Which shard of how many (ingest.shards.Shard)."""

    @property
    def index(self) -> int: ...

    @property
    def count(self) -> int: ...


KEEP = 3


async def save(
    conn: Conn, shard: Shard, state: bytes | bytearray, last_rid: int, last_event_rid: int
) -> None:
    """`state` (Engine.snapshot) as it was when fixes up to `last_rid` and events up to
    `last_event_rid` were committed."""
    async with conn.transaction():
        await conn.copy_to_table(
            "engine_snapshots",
            source=_row(shard, state, last_rid, last_event_rid),
            columns=["shard", "shards", "last_rid", "last_event_rid", "state"],
            format="binary",
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


async def _row(
    shard: Shard, state: bytes | bytearray, last_rid: int, last_event_rid: int
) -> AsyncIterator[bytes]:
    """The snapshot as one row in COPY's binary format, the state sent in pieces: as a query
    parameter, asyncpg copies all of it into a buffer that grows by doubling (some 90 MB
    more at the peak for a 100,000-tag shard's 50 MB)."""
    yield _COPY_HEADER + struct.pack(
        "!hiiiiiqiqi", 5, 4, shard.index, 4, shard.count, 8, last_rid, 8, last_event_rid, len(state)
    )
    view = memoryview(state)
    for start in range(0, len(view), _PIECE):
        yield bytes(view[start : start + _PIECE])
    yield _COPY_END


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


async def encode(state: EngineState) -> bytearray:
    """`state` as a snapshot, in parts. The caller keeps the state from changing meanwhile
    (ingest.shard holds the shard's lock: its own judging waits, nothing else does). Each
    part is added to the snapshot as soon as it is encoded: the parts are not held as well
    as the whole (50 MB more at 100,000 tags, every 30 s)."""
    tables: list[tuple[dict[str, Any], Callable[[dict[str, Any]], EngineState]]] = [
        (state.devices, lambda part: EngineState(devices=part)),
        (state.people, lambda part: EngineState(people=part)),
    ]
    keys = [list(table) for table, _ in tables]
    blob = _array_header(sum(-(-len(k) // PART) for k in keys))
    for (table, wrap), names in zip(tables, keys, strict=True):
        for start in range(0, len(names), PART):
            part = {key: table[key] for key in names[start : start + PART]}
            _ENCODER.encode_into(_ENCODER.encode(wrap(part)), blob, -1)  # a msgpack bin
            await asyncio.sleep(0)
    return blob


def _array_header(n: int) -> bytearray:
    """The start of a msgpack array of `n` items (fixarray, array 16 or array 32)."""
    if n < 16:
        return bytearray([0x90 | n])
    if n < 1 << 16:
        return bytearray(b"\xdc" + n.to_bytes(2, "big"))
    return bytearray(b"\xdd" + n.to_bytes(4, "big"))


async def decode(blob: bytes) -> AsyncIterator[EngineState]:
    """A snapshot's state, part by part (one part for a snapshot in one piece)."""
    if blob[:1] in _ARRAY:
        for part in _PARTS.decode(blob):
            yield _STATE.decode(part)
            await asyncio.sleep(0)
    else:
        yield _STATE.decode(blob)
