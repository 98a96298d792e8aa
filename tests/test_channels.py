"""Two deployments sharing one Redis on different database numbers do not hear each
other's live feed (Redis pub/sub itself ignores the database number)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from alerts.feed import CHANNEL, announce
from fencewatch.channels import channel


async def _next(pubsub, seconds: float) -> dict | None:  # type: ignore[no-untyped-def]
    try:
        async with asyncio.timeout(seconds):
            async for message in pubsub.listen():
                return message
    except TimeoutError:
        return None
    return None


async def test_an_alert_reaches_only_consoles_on_the_same_database(redis_url: str) -> None:
    base, _ = redis_url.rsplit("/", 1)
    mine = Redis.from_url(redis_url)
    # Database 0: no test process's own (tests.conftest.redis_url), so no parallel test's
    # service publishes on its channel; the next number would be another worker's.
    other = Redis.from_url(f"{base}/0")
    listeners = {}
    try:
        for name, client in (("mine", mine), ("other", other)):
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(channel(client, CHANNEL))
            listeners[name] = pubsub
        await announce(mine, {"event": "raised", "alert": {"id": 1}})
        heard = await _next(listeners["mine"], 5)
        assert heard is not None and b'"raised"' in heard["data"]
        assert await _next(listeners["other"], 0.5) is None
    finally:
        for pubsub in listeners.values():
            await pubsub.aclose()
        await mine.aclose()
        await other.aclose()
