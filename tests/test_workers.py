"""Horizontal workers (issue 4): two `fencewatch serve` processes share the engine's shards
through Redis leases; each person is judged by one of them, in device-time order, and when
one dies (kill -9) the other takes its shards over — nothing lost, nothing raised twice.
The second is an ingest-only worker, as in the compose `scale` profile: it answers only
/healthz and /metrics."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from ingest.leases import ingest_lag
from tests.faults import Fleet, Stack, needs_private_stack, until
from tests.test_faults import CROSSING, DEVICES, FIXES, settle

pytestmark = needs_private_stack

SHARDS = 4


def held(stack: Stack, worker: int) -> int:
    return int(stack.metric(worker, "fencewatch_shards_held"))


async def shared_out(stack: Stack, shares: dict[int, int]) -> None:
    async def balanced() -> bool:
        return await asyncio.to_thread(lambda: {w: held(stack, w) for w in shares} == shares)

    await until(balanced, f"the shards were not shared out as {shares}")


async def test_two_workers_share_the_fleet_and_one_takes_over_when_the_other_dies(
    stack: Stack,
) -> None:
    fleet = Fleet(DEVICES, FIXES, CROSSING)
    await fleet.load(stack)
    stack.start_service(0, SHARDS)
    stack.start_service(1, SHARDS, roles="ingest")  # waits for its /healthz
    await shared_out(stack, {0: 2, 1: 2})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports[1]}") as worker:
        assert (await worker.get("/api/v1/alerts")).status_code == 404

    publisher = fleet.publish(stack)
    redis = Redis.from_url(stack.redis_url)
    waits: list[float | None] = []

    async def both_working() -> bool:
        # What the heartbeats say of the fixes' wait for their commit: the packing listens.
        waits.append(await ingest_lag(redis, stack.client_id))
        stored = [stack.metric(w, "fencewatch_fixes_stored_total") for w in (0, 1)]
        return min(stored) > 0 and sum(stored) >= len(fleet.messages) // 3

    async def told() -> bool:
        return await both_working() and max(w or 0 for w in waits) > 0

    await until(told, "the workers did not both store fixes and say how long they waited")
    await redis.aclose()
    stack.kill_service(1)
    publisher.join()
    await shared_out(stack, {0: SHARDS})
    await settle(stack, fleet, "two workers, one killed mid-stream")

    # The worker comes back and gets its share again.
    stack.start_service(1, SHARDS, roles="ingest")
    await shared_out(stack, {0: 2, 1: 2})
