"""Shard leases in Redis: which worker runs which shard, with fail-over.

A lease is a key per shard holding the worker's id with a time to live, renewed well
within it; a worker that dies stops renewing and its shards are free once the keys expire.
Redis only arbitrates: if it is down, holders keep what they hold (the broker still lets
only one connection hold a shard's session) and nobody takes anything new; after a flush,
holders simply take their own leases again.

The heartbeat also says how far behind the worker's ingest runs (ingest.lag), for the
upkeep that shares the database to give way (`ingest_lag`, storage.compaction)."""

from __future__ import annotations

import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

TTL_MS = 10_000

# Take a lease that is free or already ours (renewing it, or after a restart with the same
# worker id), including one that vanished with a Redis flush; 0 when another worker has it.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    def __init__(self, redis: Redis, deployment: str, worker: str) -> None:
        self.redis = redis
        self.worker = worker
        self.prefix = f"fencewatch:lease:{deployment}:"
        self.workers = f"fencewatch:workers:{deployment}"
        self.lag = lag_key(deployment, worker)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    async def heartbeat(self, lag_ms: int = 0) -> int:
        """Say this worker is alive, and how long its fixes waited for their commit since
        the last heartbeat; how many workers are."""
        now = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.workers, {self.worker: now + TTL_MS})
        pipe.set(self.lag, lag_ms, px=TTL_MS)
        pipe.zremrangebyscore(self.workers, "-inf", now)
        pipe.zcard(self.workers)
        *_, live = await pipe.execute()
        return max(int(live), 1)

    @staticmethod
    def fair_share(count: int, live: int) -> int:
        return math.ceil(count / live)

    async def claim(self, name: str) -> bool:
        return bool(await self._claim(keys=[self.prefix + name], args=[self.worker, TTL_MS]))

    async def release(self, name: str) -> None:
        await self._release(keys=[self.prefix + name], args=[self.worker])

    async def leave(self) -> None:
        await self.redis.zrem(self.workers, self.worker)
        await self.redis.delete(self.lag)


def lag_key(deployment: str, worker: str) -> str:
    return f"fencewatch:ingest_lag:{deployment}:{worker}"


async def ingest_lag(redis: Redis, deployment: str) -> float | None:
    """The longest a fix of `deployment` waited for its commit, in seconds, over the last
    heartbeat of every live worker; None when no worker says, or Redis does not answer."""
    now = int(time.time() * 1000)
    try:
        live = await redis.zrangebyscore(f"fencewatch:workers:{deployment}", now, "+inf")
        if not live:
            return None
        names = [w.decode() if isinstance(w, bytes) else str(w) for w in live]
        said = await redis.mget([lag_key(deployment, name) for name in names])
    except (RedisError, OSError):
        return None
    waits = [int(v) for v in said if v is not None]
    return max(waits) / 1000 if waits else None
