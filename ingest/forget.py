"""Ending a protection takes where the protected person was out of Redis too
(docs/security.md#protected-persons-location).

`forget` runs in the transaction that ends a protection, before it commits (the API's end,
a supervisee's release, the retention job's sweep): a Redis error fails the end, to be tried
again, rather than leave a copy behind. It marks the person ended first — from then on no
shard, whatever rules it still holds, appends their sightings (alerts.feed), and the
proximity check saves its state only without them (ingest.proximity) — then deletes their
entries from the sightings stream, found through their index, and their latest sighting and
runs from the check's saved state. Registering a protection under that id again (`allow`)
lifts the mark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerts.feed import ENDED, ENTRIES, SIGHTINGS
from geofence.together import PROTECTED_PREFIX
from ingest.proximity import STATE, Saved, load_saved

UNREACHABLE = (RedisError, OSError)


async def forget(redis: Redis, protections: Iterable[str]) -> None:
    """Raises UNREACHABLE when Redis fails, having lifted the mark if it could: the
    protections are not ended, and their phones' sightings must still be taken."""
    people = {PROTECTED_PREFIX + p for p in protections}
    if not people:
        return
    try:
        await _forget(redis, people)
    except UNREACHABLE:
        with contextlib.suppress(*UNREACHABLE):
            await redis.srem(ENDED, *people)
        raise


async def _forget(redis: Redis, people: set[str]) -> None:
    await redis.sadd(ENDED, *people)
    for person in sorted(people):
        entries = cast("list[bytes]", await redis.zrange(ENTRIES + person, 0, -1))
        if entries:
            await redis.xdel(SIGHTINGS, *entries)
        await redis.delete(ENTRIES + person)
    saved = await load_saved(redis)
    if saved is None:
        return
    if people & set(saved.state.protected()):
        kept = Saved(saved.entry, saved.state.without(people))
        await redis.set(STATE, msgspec.msgpack.encode(kept))


async def allow(redis: Redis, protection: str) -> None:
    """Their phone's sightings are taken again: the protection is registered anew."""
    await redis.srem(ENDED, PROTECTED_PREFIX + protection)
