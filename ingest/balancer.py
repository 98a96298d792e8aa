"""This worker's fair share of the shards: take free ones, keep them leased, hand back the
extras when workers join, and take over those of a worker that died (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from fencewatch.metrics import SHARDS_HELD
from ingest.lag import LAG
from ingest.leases import TTL_MS, Leases
from ingest.shard import ShardRunner
from ingest.shards import Shard

log = logging.getLogger("fencewatch.ingest")

RENEW_S = TTL_MS / 1000 / 5
# How long after a renewal was asked for the lease surely still holds (less a margin for
# clocks running at slightly different rates).
VALID_S = TTL_MS / 1000 * 0.8
BALANCE_S = 2.0


class Balancer:
    def __init__(
        self,
        leases: Leases,
        count: int,
        base: str,
        open_shard: Callable[[Shard, str], Awaitable[ShardRunner]],
    ) -> None:
        self.leases = leases
        self.count = count
        self.base = base
        self.open_shard = open_shard
        self.leased: set[int] = set()
        self.held: dict[int, ShardRunner] = {}
        self.live = 1

    @property
    def connected(self) -> bool:
        """Judging its share: each shard held has its session and subscriptions, and it
        holds some, unless there are more workers than shards (then it stands by)."""
        enough = bool(self.held) or self.live > self.count
        return enough and all(r.connected for r in self.held.values())

    def name(self, index: int) -> str:
        return Shard(index, self.count).name(self.base)

    async def run(self) -> None:
        await asyncio.gather(self._keep(), self._balance())

    async def close(self, grace_s: float) -> None:
        """Hand everything back, each shard with a fresh snapshot, unless the database has
        not taken the commits and snapshots within `grace_s` (ShardRunner.close)."""
        deadline = asyncio.get_running_loop().time() + grace_s
        for index in [*self.held, *(self.leased - self.held.keys())]:
            await self._give_back(index, snapshot=True, deadline=deadline)
        with contextlib.suppress(RedisError, OSError):  # if so, the heartbeat expires
            await self.leases.leave()

    async def _keep(self) -> None:
        # Apart from balancing, so a long restore never lets a lease lapse.
        while True:
            try:
                self.live = await self.leases.heartbeat(LAG.take())
                for index in list(self.leased):
                    asked = time.monotonic()
                    runner = self.held.get(index)
                    if await self.leases.claim(self.name(index)):
                        if runner is not None:
                            runner.judging.valid_until = asked + VALID_S
                        continue
                    log.error("shard %s was taken by another worker", self.name(index))
                    self.leased.discard(index)
                    if runner is not None:
                        runner.judging.held = False
            except (RedisError, OSError) as exc:
                log.warning("shard leases not renewed (%s); trying again", exc)
            await asyncio.sleep(RENEW_S)

    async def _balance(self) -> None:
        while True:
            for index, runner in list(self.held.items()):
                # Taken by another worker, or no renewal for so long that it may have been:
                # let the shard go (and its MQTT session, so two holders do not keep taking
                # it from each other), to be taken afresh once Redis answers again.
                if index not in self.leased or time.monotonic() > runner.judging.valid_until:
                    runner.judging.held = False  # a commit waiting on the lease gives up
                    await self._give_back(index, snapshot=False)
                else:
                    runner.check()  # a crash stops the service; nothing is lost
            try:
                await self._rebalance()
            except (RedisError, OSError) as exc:
                log.warning("shards not balanced (%s); trying again", exc)
            await asyncio.sleep(BALANCE_S)

    async def _rebalance(self) -> None:
        share = self.leases.fair_share(self.count, self.live)
        while len(self.held) > share:
            await self._give_back(max(self.held), snapshot=True)
        # Each worker starts its search elsewhere, so they do not all race for shard 0.
        start = zlib.crc32(self.leases.worker.encode())
        for step in range(self.count):
            if len(self.held) >= share:
                break
            index = (start + step) % self.count
            asked = time.monotonic()
            if index in self.held or not await self.leases.claim(self.name(index)):
                continue
            self.leased.add(index)
            try:
                runner = await self.open_shard(Shard(index, self.count), self.name(index))
                runner.judging.valid_until = asked + VALID_S
                self.held[index] = runner
                SHARDS_HELD.set(len(self.held))
            except Exception:
                log.exception("shard %s could not start; handing it back", self.name(index))
                await self._give_back(index, snapshot=False)

    async def _give_back(self, index: int, snapshot: bool, deadline: float | None = None) -> None:
        runner = self.held.pop(index, None)
        SHARDS_HELD.set(len(self.held))
        if runner is not None:
            await runner.close(snapshot and index in self.leased, deadline)
        if index in self.leased:
            self.leased.discard(index)
            with contextlib.suppress(RedisError, OSError):  # if so, the lease expires
                await self.leases.release(self.name(index))
