"""Ingest, batch by batch: broker → decode → engine → commit → ack → fan-out.

Batch N+1 is gathered and judged while batch N commits; commits run one at a time, in
order, each followed by its batch's broker acks. The lock covers the engine's steps and
the hand-off to the commit, so whoever holds it and has drained the commit in flight (a
snapshot) sees the engine exactly as far as the database.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence

import asyncpg
import msgspec

from alerts.downlink import CommandAckError, record_command_ack
from alerts.feed import Feed
from fencewatch.metrics import (
    FIXES_RECEIVED,
    FIXES_REJECTED,
    FIXES_STORED,
    INGEST_BACKLOG,
    INGEST_BATCH_SECONDS,
)
from geofence import guard
from geofence.engine import Engine
from geofence.guard import Message
from geofence.judge import Judged
from geofence.model import DeviceEvent, Verdict
from geofence.proximity import Sighting, protected_sighting
from geofence.ruleset import RuleSet
from ingest import receipts, topics
from ingest.decode import Decoded, Rejection, decode_for, decode_protected
from ingest.lag import LAG
from ingest.mqtt import Inbound, MqttSource
from ingest.quarantine import Quarantine
from ingest.restore import restore
from ingest.shards import Shard
from ingest.writer import Committed, commit
from storage.db import UNAVAILABLE
from storage.snapshots import Capture

log = logging.getLogger("fencewatch.ingest")

MAX_BATCH = 5000
MAX_WAIT_S = 0.02
RETRY_S = (0.5, 1, 2, 5, 10)
GUARDED_S = 600.0  # after a fault the engine raised, batches are judged guarded this long


class ShardLost(Exception):
    """Another worker holds the shard now: commit nothing more, acknowledge nothing."""


class Judging:
    """One shard's judging: its engine, the database its outcomes are committed to, one
    batch at a time, and the fan-out; shared by the shard's ingest loop and the clock."""

    def __init__(self, engine: Engine, pool: asyncpg.Pool, feed: Feed) -> None:
        self.engine = engine
        self.pool = pool
        self.feed = feed
        self.lock = asyncio.Lock()
        self.last_rid = 0
        self.last_event_rid = 0
        self.stored = 0  # fixes committed by this holder
        # The shard's lease: `held` is cleared once this worker lets the shard go (taken by
        # another, or not renewed in time); until `valid_until` (monotonic) no other worker
        # can have taken it, renewed or not.
        self.held = True
        self.valid_until = math.inf
        self.inflight: asyncio.Future[None] | None = None
        self.quarantine = Quarantine()
        self.guarded_until = 0.0  # monotonic; see IngestLoop._judge
        # The snapshot being written, which keeps what judging is about to change.
        self.capture: Capture | None = None

    def changing(self, devices: Iterable[str]) -> None:
        """Judging is about to change these devices' state and their wearers': a snapshot
        being written keeps it as it was first (storage.snapshots.Capture)."""
        if self.capture is not None:
            wanted = set(devices)
            owner = self.engine.rules.device_owner
            self.capture.keep(wanted, {owner[d] for d in wanted if d in owner})

    async def drain(self) -> None:
        """Wait for the commit in flight; its failure is raised here (then nothing may be
        committed or snapshotted after it)."""
        if self.inflight is not None:
            await asyncio.shield(self.inflight)

    @property
    def busy(self) -> bool:
        return self.lock.locked() or (self.inflight is not None and not self.inflight.done())

    async def commit(
        self,
        judged: Sequence[Judged],
        events: Sequence[DeviceEvent],
        rejections: Sequence[Rejection],
        verdicts: list[Verdict],
    ) -> Committed:
        """Commit, retrying until the database takes it: the engine has already moved on,
        and the broker keeps the messages unacknowledged meanwhile."""
        attempt = 0
        while True:
            await self._lease_holds()  # before every attempt: a retry may outlast the lease
            try:
                async with self.pool.acquire() as conn:
                    done = await commit(
                        conn, judged, events, self.engine.rules.device_owner, rejections, verdicts
                    )
                break
            except UNAVAILABLE as exc:
                delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                log.error("commit failed (%s); retrying in %ss", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
        self.last_rid = max(self.last_rid, done.last_rid)
        self.last_event_rid = max(self.last_event_rid, done.last_event_rid)
        self.stored += done.stored
        return done

    async def _lease_holds(self) -> None:
        """Commit only while the lease surely holds: a worker cut off from Redis waits for a
        renewal rather than judge alongside the worker that may have taken its shard."""
        if time.monotonic() > self.valid_until:
            log.warning("shard lease not renewed in time; waiting for Redis before committing")
        # Polled: a renewal moves the deadline, a loss clears `held`.
        while self.held and time.monotonic() > self.valid_until:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        if not self.held:
            raise ShardLost

    def quarantined(
        self, outcome: guard.Guarded, sources: Sequence[Inbound]
    ) -> tuple[list[Rejection], set[int]]:
        """The guard's faults as rejected messages (returned, with the faulty messages'
        indices) and engine_fault alerts (added to the outcome's verdicts)."""
        if not (outcome.faults or self.quarantine.open):
            return [], set()
        judged = {j.supervisee for j in outcome.judged} if self.quarantine.open else set()
        now = int(time.time() * 1000)
        rejections, verdicts = self.quarantine.record(outcome.faults, sources, now, judged)
        outcome.verdicts += verdicts
        return rejections, {f.index for f in outcome.faults if f.index is not None}

    async def tick(self, now_ms: int) -> None:
        async with self.lock:
            if self.capture is not None:
                self.changing(device for _, device in self.engine.watchdogs_due(now_ms))
            verdicts, faults = guard.tick(self.engine, now_ms)
            if faults:
                verdicts += self.quarantine.record(faults, (), now_ms)[1]
            if verdicts:
                await self.drain()
                done = await self.commit((), (), (), verdicts)
                await self.feed.publish((), done.alerts, self.engine)


def _protected(rules: RuleSet, d: Decoded, decoded: Decoded) -> list[Sighting]:
    """A protected person's phone's message: its sightings go to the proximity check only
    (alerts.feed), never to an engine, the fixes or the map; a rejection of it is kept
    without its payload, which would be a copy of where they were (docs/security.md)."""
    decoded.rejections += [msgspec.structs.replace(r, payload=b"") for r in d.rejections]
    found = []
    for fix in d.fixes:
        protection = rules.protected_devices.get(fix.device)
        if protection is not None and (seen := protected_sighting(fix, protection)):
            found.append(seen)
    return found


class IngestLoop:
    def __init__(self, judging: Judging, source: MqttSource, shard: Shard) -> None:
        self.judging = judging
        self.source = source
        self.shard = shard
        self.batches = 0

    async def run(self) -> None:
        while True:
            items = await self.source.batch(MAX_BATCH, MAX_WAIT_S)
            INGEST_BACKLOG.set(self.source.backlog)
            await self.handle(items)

    async def handle(self, items: list[Inbound]) -> None:
        """Judge a batch and hand it to the committer once the batch before is committed."""
        judging = self.judging
        started = time.perf_counter()
        async with judging.lock:
            rules = judging.engine.rules
            foreign = {i.topic for i in items if self.shard.foreign(i.topic, rules)}
            if foreign:
                # Its own shard's session has the message too: ours is a stale subscription.
                self.source.drop(foreign)
            mine = [i for i in items if i.topic not in foreign]
            decoded = Decoded()
            waiting: list[receipts.Receipt] = []  # senders waiting for the commit
            acks: list[tuple[str, Inbound]] = []  # (the acknowledging tag, its message)
            uplink: list[Inbound] = []
            for item in mine:
                if (device := topics.acknowledging(item.topic)) is not None:
                    acks.append((device, item))
                else:
                    uplink.append(item)
            if acks:
                decoded.rejections += await self._command_acks(acks)
            # Each message's fixes and events, and the message, for the guard to name a
            # message the engine cannot judge.
            messages: list[Message] = []
            sources: list[Inbound] = []
            protected: list[Sighting] = []
            for item in uplink:
                if (p := decode_protected(rules, item.topic, item.payload, item.at)) is not None:
                    if receipts.awaited(item.topic):
                        waiting.append(receipts.receipt(item.topic, item.payload, p.rejections))
                    protected += _protected(rules, p, decoded)
                    continue
                d = decode_for(rules, item.topic, item.payload, item.at)
                if receipts.awaited(item.topic):
                    waiting.append(receipts.receipt(item.topic, item.payload, d.rejections))
                decoded.rejections += d.rejections
                if d.fixes or d.events:
                    messages.append((d.fixes, d.events))
                    sources.append(item)
                    decoded.fixes += d.fixes
                    decoded.events += d.events
            outcome = await self._judge(messages, decoded)
            quarantined, faults = judging.quarantined(outcome, sources)
            if quarantined:
                decoded.rejections += quarantined
                # Kept as the quarantined message, not as an event judged.
                decoded.events = [
                    e for i, m in enumerate(messages) if i not in faults for e in m[1]
                ]
            FIXES_RECEIVED.inc(len(decoded.fixes))
            for r in decoded.rejections:
                FIXES_REJECTED.labels(r.reason).inc()
            await judging.drain()
            judging.inflight = asyncio.ensure_future(
                self._finish(
                    items, outcome.judged, decoded, outcome.verdicts, started, waiting, protected
                )
            )

    async def _judge(self, messages: list[Message], decoded: Decoded) -> guard.Guarded:
        """The engine's outcome for the batch, with what it cannot judge set aside
        (geofence.guard). Guarding captures the state of everyone in the batch first, a
        third of the engine's time, so it is done only for GUARDED_S after a fault; the
        first fault is met by putting the engine back as committed (as a restart would:
        the shard's snapshot and the fixes committed since) and judging the batch guarded."""
        judging = self.judging
        if judging.capture is not None:
            judging.changing([f.device for f in decoded.fixes] + [e.device for e in decoded.events])
        if time.monotonic() >= judging.guarded_until:
            try:
                outcome = judging.engine.process(decoded.fixes, decoded.events)
            except Exception as exc:
                log.error("engine raised (%s); judging again, guarded", guard.describe(exc))
                await judging.drain()
                async with judging.pool.acquire() as conn:
                    restored = await restore(conn, judging.engine.rules, self.shard)
                judging.engine, judging.last_rid, judging.last_event_rid, _ = restored
            else:
                return guard.Guarded(outcome.judged, outcome.verdicts)
        guarded = guard.process(judging.engine, messages)
        if guarded.faults:
            judging.guarded_until = time.monotonic() + GUARDED_S
        return guarded

    async def _finish(
        self,
        items: list[Inbound],
        judged: list[Judged],
        decoded: Decoded,
        verdicts: list[Verdict],
        started: float,
        waiting: list[receipts.Receipt],
        protected: list[Sighting],
    ) -> None:
        judging = self.judging
        done = await judging.commit(judged, decoded.events, decoded.rejections, verdicts)
        self.source.ack(items)
        if waiting:
            await receipts.send(judging.pool, waiting)
        FIXES_STORED.inc(done.stored)
        if items:
            LAG.committed(items[0].at)  # the batch is in arrival order
        INGEST_BATCH_SECONDS.observe(time.perf_counter() - started)
        self.batches += 1
        await judging.feed.publish(judged, done.alerts, judging.engine, protected)

    async def _command_acks(self, acks: list[tuple[str, Inbound]]) -> list[Rejection]:
        """Tags acknowledging commands, recorded before the batch's broker acks; a
        malformed acknowledgement is kept as a rejected message."""
        rejected = []
        async with self.judging.pool.acquire() as conn, conn.transaction():
            for device, item in acks:
                try:
                    await record_command_ack(conn, device, item.payload)
                except CommandAckError as exc:
                    rejected.append(Rejection(item.topic, item.payload, "schema", str(exc)))
        return rejected
