"""Engine snapshots, per shard: written behind, read back when a shard is taken
(ingest.restore, which judges again what was committed after them).

A snapshot records a shard's state with the last fix and event it had judged. Each shard
keeps its newest few; a previous layout's (a different number of shards) are kept until
every shard of the new one has a snapshot of its own.

A snapshot is a `Capture`: the state as it was when its shard had committed fixes up to
`last_rid` and events up to `last_event_rid`, written while judging goes on. It is
encoded and sent to PostgreSQL part by part (PART devices or people, an encoded
EngineState each, one row of `engine_snapshot_parts`), the event loop let go between
parts; a device or person is changed only after `Capture.keep` has kept its state as it
was (copy on write). So the shard's judging never waits for the encoding — a 100,000-tag
shard is some 50 MB of state, 200 ms or more of encoding, and all of it under the
shard's lock would hold every batch that long — and the worker never holds more than a
part and what changed meanwhile, not the whole. The header row and its parts are
committed together: a worker killed midway leaves the snapshot before it.

A snapshot written before parts had rows of their own (state in the header row: a msgpack
array of parts, or an EngineState in one piece) still reads."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import asyncpg
import msgspec

from geofence.state import EngineState
from storage.db import Conn

# Devices or people a part (~250 KB): encoding one holds the event loop ~2 ms (a
# 100,000-tag shard's 200 parts 0.4 s, at a load of 9); parts of 2,000 left a batch
# waiting up to 57–84 ms for the loop (docs/benchmarks.md, eighth round).
PART = 500
# COPY's binary format (PostgreSQL's COPY page): signature, flags, header extension; the
# end of the data.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_END = struct.pack("!h", -1)
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
# Parts read a query at a time (~2.5 MB): a query for each of a 100,000-tag shard's 200
# parts took 0.5 s longer at a load of 9.
READ = 10


class Capture:
    """`state` as it is now, with the fix and event rids it was judged up to, to be written
    part by part while the state goes on changing. Whoever changes a device's or a
    person's state calls `keep` with them first (ingest.loop.Judging.changing)."""

    def __init__(self, state: EngineState, last_rid: int, last_event_rid: int) -> None:
        self.state = state
        self.last_rid = last_rid
        self.last_event_rid = last_event_rid
        self._keys = (list(state.devices), list(state.people))
        # The state, encoded, of those changed since the capture and not yet written: the
        # first change keeps it (one encoding a change, and only during a snapshot).
        self._kept: tuple[dict[str, msgspec.Raw], dict[str, msgspec.Raw]] = ({}, {})

    def keep(self, devices: Iterable[str], people: Iterable[str]) -> None:
        """These devices' and people's state is about to change: keep it as it is (once;
        whatever changed since already was). Those added since the capture are not in it
        and need nothing kept; keeping them anyway is only wasted."""
        for table, kept, keys in (
            (self.state.devices, self._kept[0], devices),
            (self.state.people, self._kept[1], people),
        ):
            for key in keys:
                if key not in kept and (value := table.get(key)) is not None:
                    kept[key] = msgspec.Raw(_ENCODER.encode(value))

    def parts(self) -> Iterable[bytes]:
        """The state as captured, one encoded EngineState of at most PART devices or
        people at a time, each encoded when asked for. A key's kept state is let go once
        written; should it change again, it is kept again, unused."""
        devices, people = self._keys
        for start in range(0, len(devices), PART):
            yield _ENCODER.encode(EngineState(devices=self._part(0, devices[start : start + PART])))
        for start in range(0, len(people), PART):
            yield _ENCODER.encode(EngineState(people=self._part(1, people[start : start + PART])))

    def _part(self, which: int, keys: list[str]) -> dict[str, Any]:
        table: dict[str, Any] = (self.state.devices, self.state.people)[which]
        kept = self._kept[which]
        part = {}
        for key in keys:
            value = kept.pop(key, None)
            # Unchanged since the capture unless kept; one gone without being kept would
            # raise here rather than be left out of the snapshot.
            part[key] = table[key] if value is None else value
        return part


async def save(conn: Conn, shard: Shard, capture: Capture) -> None:
    """Write `capture` as the shard's newest snapshot, its parts as they are encoded."""
    async with conn.transaction():
        snapshot = await conn.fetchval(
            "INSERT INTO engine_snapshots (shard, shards, last_rid, last_event_rid)"
            " VALUES ($1, $2, $3, $4) RETURNING id",
            shard.index,
            shard.count,
            capture.last_rid,
            capture.last_event_rid,
        )
        await conn.copy_to_table(
            "engine_snapshot_parts",
            source=_rows(snapshot, capture),
            columns=["snapshot_id", "part", "state"],
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


async def _rows(snapshot: int, capture: Capture) -> AsyncIterator[bytes]:
    """The parts as rows in COPY's binary format, one encoded as the one before is sent;
    between them the shard's batches are judged (and change what was kept)."""
    yield _COPY_HEADER
    for number, part in enumerate(capture.parts()):
        yield struct.pack("!hiqiii", 3, 8, snapshot, 4, number, len(part)) + part
        await asyncio.sleep(0)
    yield _COPY_END


async def latest(conn: Conn, shard: Shard) -> list[asyncpg.Record]:
    """(id, last_rid, last_event_rid, state) of the shard's newest snapshot — state NULL
    when it is in parts (`read`); without one of its own, of every shard's newest in the
    previous layout (ingest.restore keeps the shard's own people of them)."""
    own = await conn.fetch(
        "SELECT id, last_rid, last_event_rid, state FROM engine_snapshots"
        " WHERE shard = $1 AND shards = $2 ORDER BY id DESC LIMIT 1",
        shard.index,
        shard.count,
    )
    if own:
        return own
    return await conn.fetch(
        "SELECT DISTINCT ON (shard) id, last_rid, last_event_rid, state FROM engine_snapshots"
        " WHERE shards = (SELECT shards FROM engine_snapshots WHERE shards <> $1"
        "  ORDER BY id DESC LIMIT 1)"
        " ORDER BY shard, id DESC",
        shard.count,
    )


async def read(conn: Conn, snapshot: asyncpg.Record) -> AsyncIterator[EngineState]:
    """A snapshot's state (a row of `latest`), part by part, READ parts at a time."""
    if snapshot["state"] is not None:
        async for state in _decode(snapshot["state"]):
            yield state
        return
    number = 0
    while True:
        rows = await conn.fetch(
            "SELECT state FROM engine_snapshot_parts WHERE snapshot_id = $1 AND part >= $2"
            " ORDER BY part LIMIT $3",
            snapshot["id"],
            number,
            READ,
        )
        for row in rows:
            yield _STATE.decode(row["state"])
            number += 1
            await asyncio.sleep(0)
        if len(rows) < READ:
            return


async def _decode(blob: bytes) -> AsyncIterator[EngineState]:
    """A snapshot written before parts had rows: a msgpack array of parts, or one piece."""
    if blob[:1] in _ARRAY:
        for part in _PARTS.decode(blob):
            yield _STATE.decode(part)
            await asyncio.sleep(0)
    else:
        yield _STATE.decode(blob)
