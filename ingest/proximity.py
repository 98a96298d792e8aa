"""The live proximity check: no-contact orders and gatherings across every shard.

Every shard appends the trusted sightings of each committed batch to one Redis stream
(alerts.feed); this check, run by the one scheduler process, reads the stream in order and
feeds the same watcher `fencewatch replay` uses (geofence.together), then commits the
verdicts as alerts through the shards' writer. The watcher's state is saved to Redis with
the stream entry it reached every SAVE_EVERY_S, so a restart takes up where it stopped and
judges again what came after (an alert raised twice is one alert: its key is unique). A
protected person whose protection has ended is never saved again (ingest.forget), though the
check may hold them until it reloads the rules.
docs/scaling.md has the design and its cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

import asyncpg
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerts.feed import ENDED, SIGHTINGS, announce
from geofence.model import Verdict
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from geofence.together import Together, TogetherState
from ingest.writer import commit
from storage.db import UNAVAILABLE

log = logging.getLogger("fencewatch.proximity")

STATE = "fencewatch:proximity"  # the watcher's saved state and the stream entry it reached
SAVE_EVERY_S = 30.0
READ_COUNT = 500
RETRY_S = 2.0


# Saves the state (ARGV[1]) unless a protected person it holds (ARGV[2:]) has ended:
# returns those, to be left out first. One script, so no end slips in between.
_SAVE = """
local ended = {}
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then table.insert(ended, ARGV[i]) end
end
if #ended == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
return ended
"""


class Saved(msgspec.Struct):
    entry: str  # the last stream entry taken into `state`
    state: TogetherState


async def load_saved(redis: Redis) -> Saved | None:
    """The check's saved state; None when there is none, or when it cannot be read: then
    it is deleted (the check starts afresh from the stream, and an unreadable state may
    still hold a protected person's position that must go)."""
    blob = cast("bytes | None", await redis.get(STATE))
    if blob is None:
        return None
    try:
        return msgspec.msgpack.decode(blob, type=Saved)
    except msgspec.DecodeError as exc:
        log.error("saved proximity state unreadable (%s); deleted, starting afresh", exc)
        await redis.delete(STATE)
        return None


_sightings = msgspec.msgpack.Decoder(list[Sighting])


class ProximityCheck:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, rules: Callable[[], RuleSet]) -> None:
        self.pool = pool
        self.redis = redis
        self.rules = rules
        self.together: Together | None = None
        self._rules: RuleSet | None = None
        self.entry = "$"  # only what comes after the start, until a saved state says more
        self.raised = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set, then save: the service stops it rather than cancelling it,
        as a cancelled blocking XREAD could hang the shutdown on the shared Redis client."""
        await self._restore()
        saved_at = time.monotonic()
        while not stop.is_set():
            try:
                read = cast(
                    "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                    await self.redis.xread({SIGHTINGS: self.entry}, READ_COUNT, 1000),
                )
            except (RedisError, OSError) as exc:
                log.warning("sightings stream unreadable (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)
                continue
            together = self._watcher()
            verdicts: list[Verdict] = []
            for _, entries in read:
                for entry, fields in entries:
                    self.entry = entry.decode()
                    if together is None:
                        continue
                    try:
                        sightings = _sightings.decode(fields[b"s"])
                    except (KeyError, msgspec.DecodeError) as exc:
                        log.error("sightings entry %s unreadable (%s); skipped", self.entry, exc)
                        continue
                    for s in sightings:
                        verdicts += together.see(s)
            if verdicts:
                await self._commit(verdicts)
            if time.monotonic() - saved_at >= SAVE_EVERY_S:
                await self.save()
                saved_at = time.monotonic()
        await self.save()

    def _watcher(self) -> Together | None:
        """The watcher under the rules in force now; what it knew carries over a reload."""
        rules = self.rules()
        if rules is not self._rules:
            before = self.together.state() if self.together is not None else None
            self._rules = rules
            self.together = Together.for_rules(rules)
            if self.together is not None and before is not None:
                self.together.load(before)
        return self.together

    async def _commit(self, verdicts: list[Verdict]) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    done = await commit(conn, (), (), {}, (), verdicts)
                break
            except UNAVAILABLE as exc:
                log.error("proximity alerts not committed (%s); retrying in %ss", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
        self.raised += sum(v.action == "raise" for v in verdicts)
        for change in done.alerts:
            await announce(self.redis, change)

    async def save(self) -> None:
        if self.entry == "$":
            return
        try:
            if self.together is None:
                # Nothing left to watch: what was saved (perhaps where a protected person
                # last was, docs/security.md) goes too.
                await self.redis.delete(STATE)
                return
            state = self.together.state()
            while True:
                blob = msgspec.msgpack.encode(Saved(self.entry, state))
                ended = cast(
                    "list[bytes]",
                    await self.redis.eval(_SAVE, 2, STATE, ENDED, blob, *state.protected()),
                )
                if not ended:
                    break
                state = state.without({p.decode() for p in ended})
        except (RedisError, OSError) as exc:
            log.warning("proximity state not saved (%s); next time", exc)

    async def _restore(self) -> None:
        try:
            saved = await load_saved(self.redis)
        except (RedisError, OSError):
            saved = None
        if saved is None:
            return
        self.entry = saved.entry
        together = self._watcher()
        if together is not None:
            together.load(saved.state)
