"""One shard held by this process: its engine restored from PostgreSQL, its MQTT session,
its ingest loop, and a clean hand-over when it is given up."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from alerts.feed import Feed
from geofence.ruleset import RuleSet
from ingest.broker_watch import BrokerWatch
from ingest.loop import IngestLoop, Judging
from ingest.mqtt import MqttSource
from ingest.quarantine import Quarantine, open_faults
from ingest.restore import restore
from ingest.shards import Shard
from storage import snapshots

log = logging.getLogger("fencewatch.ingest")


class ShardRunner:
    def __init__(self, shard: Shard, judging: Judging, source: MqttSource) -> None:
        self.shard = shard
        self.judging = judging
        self.source = source
        self.loop = IngestLoop(judging, source, shard)
        self.task = asyncio.create_task(self.loop.run(), name=f"ingest {source.client_id}")
        # When the newest snapshot was taken (monotonic), and the shard's commits then.
        self.snapshot_at = time.monotonic()
        self.snapshot_stored = 0

    @classmethod
    async def open(
        cls,
        shard: Shard,
        name: str,
        rules: RuleSet,
        pool: asyncpg.Pool,
        feed: Feed,
        mqtt_url: str,
        watch: BrokerWatch | None = None,
    ) -> ShardRunner:
        async with pool.acquire() as conn:
            engine, last_rid, last_event_rid, rejudged = await restore(conn, rules, shard)
            faults = await open_faults(conn)
        log.info("shard %s: restored, %d fixes and events judged again", name, rejudged)
        judging = Judging(engine, pool, feed)
        judging.quarantine = Quarantine({p: k for p, k in faults.items() if shard.owns(p)})
        judging.last_rid, judging.last_event_rid = last_rid, last_event_rid
        source = MqttSource(
            mqtt_url, name, shard.topics(rules), connection=shard.connection, watch=watch
        )
        source.start()
        return cls(shard, judging, source)

    @property
    def connected(self) -> bool:
        return self.source.steady

    def check(self) -> None:
        """Raise what stopped the shard's loop or its last commit, if anything did."""
        if self.task.done():
            self.task.result()
        inflight = self.judging.inflight
        if inflight is not None and inflight.done():
            inflight.result()

    async def tick(self, now_ms: int) -> None:
        await self.judging.tick(now_ms)

    def snapshot_due(self, every_s: float, after_fixes: int) -> bool:
        """`every_s` since the last snapshot, or `after_fixes` fixes committed since."""
        return (
            time.monotonic() - self.snapshot_at >= every_s
            or self.judging.stored - self.snapshot_stored >= after_fixes
        )

    async def snapshot(self) -> None:
        # Captured under the lock, consistent with what is committed; encoded and written
        # outside it, as judging goes on (storage.snapshots.Capture).
        judging = self.judging
        async with judging.lock:
            await judging.drain()
            capture = judging.capture = snapshots.Capture(
                judging.engine.state, judging.last_rid, judging.last_event_rid
            )
            self.snapshot_at, self.snapshot_stored = time.monotonic(), judging.stored
        try:
            await self._save(capture)
        finally:
            judging.capture = None

    async def rules_changed(self, rules: RuleSet) -> None:
        async with self.judging.lock:
            engine = self.judging.engine
            engine.rules = rules
            # A device now worn by someone another shard judges is that shard's to watch.
            owner = rules.device_owner.get
            gone = [d for d in engine.state.devices if (o := owner(d)) and not self.shard.owns(o)]
            if self.judging.capture is not None:
                self.judging.capture.keep(gone, ())
            engine.forget(gone)
            self.source.retopic(self.shard.topics(rules))

    async def close(self, snapshot: bool, deadline: float | None = None) -> None:
        """Stop between batches, once the commit in flight is done, so the snapshot never
        runs ahead of what is committed; what was not acknowledged is redelivered to the
        shard's next holder. After a failed commit there is no snapshot: the next holder
        judges again from the last good one. Nor after `deadline` (the event loop's clock):
        a stop does not wait on a database that has stalled; the commit in flight is
        cancelled unacknowledged, for the broker to redeliver."""
        judging = self.judging
        try:
            async with asyncio.timeout_at(deadline), judging.lock:
                self.task.cancel()
                try:
                    await judging.drain()
                except Exception:
                    snapshot = False
                if snapshot:
                    # Nothing changes the state now: the lock is held to the end.
                    await self._save(
                        snapshots.Capture(
                            judging.engine.state, judging.last_rid, judging.last_event_rid
                        )
                    )
        except TimeoutError:
            log.warning(
                "shard %s: the database did not finish its commit and snapshot in time;"
                " handed back without them",
                self.source.client_id,
            )
            self.task.cancel()
            if judging.inflight is not None:
                judging.inflight.cancel()
        self.source.stop()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _save(self, capture: snapshots.Capture) -> None:
        async with self.judging.pool.acquire() as conn:
            await snapshots.save(conn, self.shard, capture)
