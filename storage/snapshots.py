"""Engine state, written behind and restored at start, per shard (ingest/shards.py).

A snapshot records a shard's state with the last fix and event it had judged. On start the
shard's newest snapshot is restored and every fix and event of its people committed after
it is judged again, in commit order; alerts they raise are already recorded (same keys), so
nothing is raised twice and nothing that was committed is forgotten. A shard's commits are
serialised (one holder, one batch at a time), so "committed after" is "rid greater than".

When the number of shards changes, a shard without a snapshot of its own starts from the
newest snapshots of the previous layout, keeping its own people, and judges again from the
oldest of them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from alerts.record import apply
from geofence import guard
from geofence.engine import Engine
from geofence.model import DeviceEvent, Fix, Verdict
from geofence.ruleset import RuleSet
from geofence.state import EngineState
from storage import fixes
from storage.db import Conn

if TYPE_CHECKING:
    from ingest.shards import Shard

log = logging.getLogger("fencewatch.snapshots")

KEEP = 3
CHUNK = 5000


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


async def _latest(conn: Conn, shard: Shard) -> list[asyncpg.Record]:
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


def _ours(rules: RuleSet, shard: Shard, device: str) -> bool:
    owner = rules.device_owner.get(device)
    return owner is not None and shard.owns(owner)


def _merge(blobs: list[bytes], rules: RuleSet, shard: Shard) -> EngineState:
    """The shard's own people and their devices, out of one or more snapshots."""
    merged = EngineState()
    for blob in blobs:
        state = msgspec.msgpack.decode(blob, type=EngineState)
        merged.devices.update(
            (device, dev) for device, dev in state.devices.items() if _ours(rules, shard, device)
        )
        merged.people.update((p, s) for p, s in state.people.items() if shard.owns(p))
    return merged


class _Raised(Exception):
    """The engine raised while re-judging unguarded: start again, guarded."""


async def restore(conn: Conn, rules: RuleSet, shard: Shard) -> tuple[Engine, int, int, int]:
    """(engine, last fix rid, last event rid, how many fixes and events were re-judged).

    Re-judged as ingest judges: unguarded, the fast way; should the engine raise — the
    rules changed since the fixes were stored — all over again through geofence.guard,
    where what it raises on is left out rather than stop the start (ingest raises the
    alert when the person's next message meets the same fault)."""
    try:
        return await _restore(conn, rules, shard, guarded=False)
    except _Raised as exc:
        log.error("re-judging after the snapshot: engine raised (%s); again, guarded", exc)
        return await _restore(conn, rules, shard, guarded=True)


async def _restore(
    conn: Conn, rules: RuleSet, shard: Shard, guarded: bool
) -> tuple[Engine, int, int, int]:
    rows = await _latest(conn, shard)
    engine = Engine(rules, _merge([r["state"] for r in rows], rules, shard))
    last_rid = min((r["last_rid"] for r in rows), default=0)
    last_event_rid = min((r["last_event_rid"] for r in rows), default=0)
    rejudged = 0
    while True:
        stored, last = await fixes.committed(conn, last_rid, CHUNK)
        if not stored:
            break
        last_rid = last
        ours = [f for f in stored if _ours(rules, shard, f.device)]
        rejudged += len(ours)
        verdicts = _judge(engine, ours, [], guarded)
        async with conn.transaction():
            await apply(conn, verdicts)
    events, last_event_rid = await fixes.committed_events(conn, last_event_rid)
    if events:
        events = [e for e in events if _ours(rules, shard, e.device)]
        rejudged += len(events)
        verdicts = _judge(engine, [], events, guarded)
        async with conn.transaction():
            await apply(conn, verdicts)
    return engine, last_rid, last_event_rid, rejudged


def _judge(
    engine: Engine, fixes: list[Fix], events: list[DeviceEvent], guarded: bool
) -> list[Verdict]:
    if not guarded:
        try:
            return engine.process(fixes, events).verdicts
        except Exception as exc:
            raise _Raised(guard.describe(exc)) from exc
    messages: list[guard.Message] = [([f], ()) for f in fixes]
    messages += [((), [e]) for e in events]
    outcome = guard.process(engine, messages)
    for fault in outcome.faults:
        log.error("re-judging %s: engine raised (%s); left out", fault.device, fault.error)
    return outcome.verdicts
