"""A shard's engine put back as committed: its newest snapshot (storage.snapshots), then
every fix and event of its people committed after it, judged again in commit order. The
alerts they raise are already recorded (same keys), so nothing is raised twice and nothing
that was committed is forgotten. A shard's commits are serialised (one holder, one batch
at a time), so "committed after" is "rid greater than".

When the number of shards changes, a shard without a snapshot of its own starts from the
newest snapshots of the previous layout, keeping its own people, and judges again from the
oldest of them.

Done when a shard is taken (ingest.shard) and when the engine raises on a batch judged
unguarded (ingest.loop)."""

from __future__ import annotations

import logging

import asyncpg

from alerts.record import apply
from geofence import guard
from geofence.engine import Engine
from geofence.model import DeviceEvent, Fix, Verdict
from geofence.ruleset import RuleSet
from geofence.state import EngineState
from ingest.shards import Shard
from storage import snapshots
from storage.db import Conn
from storage.fixes import committed_events, committed_fixes

log = logging.getLogger("fencewatch.snapshots")

CHUNK = 5000


def _ours(rules: RuleSet, shard: Shard, device: str) -> bool:
    owner = rules.device_owner.get(device)
    return owner is not None and shard.owns(owner)


async def _merge(
    conn: Conn, rows: list[asyncpg.Record], rules: RuleSet, shard: Shard
) -> EngineState:
    """The shard's own people and their devices, out of one or more snapshots, read part
    by part (storage.snapshots)."""
    merged = EngineState()
    for row in rows:
        async for state in snapshots.read(conn, row):
            merged.devices.update(
                (device, dev)
                for device, dev in state.devices.items()
                if _ours(rules, shard, device)
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
    rows = await snapshots.latest(conn, shard)
    engine = Engine(rules, await _merge(conn, rows, rules, shard))
    last_rid = min((r["last_rid"] for r in rows), default=0)
    last_event_rid = min((r["last_event_rid"] for r in rows), default=0)
    rejudged = 0
    while True:
        stored, last = await committed_fixes(conn, last_rid, CHUNK)
        if not stored:
            break
        last_rid = last
        ours = [f for f in stored if _ours(rules, shard, f.device)]
        rejudged += await _rejudge(conn, engine, ours, [], guarded)
    events, last_event_rid = await committed_events(conn, last_event_rid)
    if events:
        ours_events = [e for e in events if _ours(rules, shard, e.device)]
        rejudged += await _rejudge(conn, engine, [], ours_events, guarded)
    return engine, last_rid, last_event_rid, rejudged


async def _rejudge(
    conn: Conn, engine: Engine, fixes: list[Fix], events: list[DeviceEvent], guarded: bool
) -> int:
    """Judge again and record what the alerts say; how many fixes and events were judged."""
    verdicts = _judge(engine, fixes, events, guarded)
    async with conn.transaction():
        await apply(conn, verdicts)
    return len(fixes) + len(events)


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
