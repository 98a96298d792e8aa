"""Fan-out after commit, through Redis: each person's latest position (a hash the API and
console read), a pub/sub channel of positions and alert changes for live clients, and —
while the rules have no-contact orders, protected persons or a gathering rule — a stream
of the trusted sightings every shard commits, which the proximity check reads
(ingest/proximity.py). A protected person's sightings are entries of their own, indexed by
person, so that ending their protection can find and delete them (ingest.forget).

Redis is not the record — PostgreSQL is — so a Redis outage costs live updates, never data,
and never stops ingest."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fencewatch.channels import channel
from fencewatch.timefmt import iso
from geofence import proximity
from geofence.engine import Engine, zone_state
from geofence.judge import Judged
from geofence.model import GEOFENCE_RULES, MAP_STATES, Quality

log = logging.getLogger("fencewatch.feed")

LATEST = "fencewatch:latest"
CHANNEL = "fencewatch:feed"
SIGHTINGS = "fencewatch:sightings"  # one entry a committed batch: field "s", msgpack list
# About 8 minutes at 100,000 people in batches of 100: enough to ride out a restart of the
# proximity check (it resumes from the entry it reached).
SIGHTINGS_KEPT = 100_000
# Protected persons (their key, geofence.model.Protection.person) whose protection ended:
# their sightings are no longer appended, whatever rules a shard still holds.
ENDED = "fencewatch:protected:ended"
# person → {stream entry id: its time}: their entries in SIGHTINGS (ids only, no position).
ENTRIES = "fencewatch:protected:entries:"

# A protected person's sightings, appended unless their protection has ended, and their
# entry indexed; the index loses the entries the stream has trimmed. One script: an end
# that marks the person ended first finds every entry appended before (ingest.forget).
_APPEND_PROTECTED = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 's', ARGV[2], 'p', ARGV[1])
redis.call('ZADD', KEYS[3], tonumber(string.match(id, '^(%d+)')), id)
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.match(first, '^(%d+)'))
return id
"""


def alert_message(change: dict[str, Any]) -> bytes:
    """A feed message for an alert change: {"kind": "alert", "event": ..., "alert": {...}}."""
    return msgspec.json.encode({"kind": "alert", **change})


async def announce(redis: Redis, change: dict[str, Any]) -> None:
    """Tell live clients of an alert change made outside ingest (acknowledged, resolved,
    escalated), after its commit; best effort, like all fan-out."""
    try:
        await redis.publish(channel(redis, CHANNEL), alert_message(change))
    except (RedisError, OSError) as exc:
        log.warning("Redis fan-out failed (%s); consoles catch up on their next reload", exc)


def person_state(engine: Engine, supervisee: str, zone_state: str | None) -> str:
    """ok / uncertain / outside / breach, for colouring the map."""
    person = engine.state.people.get(supervisee)
    if person is not None:
        for rule, episodes in person.episodes.items():
            if rule.startswith(GEOFENCE_RULES) and any(e.end is None for e in episodes):
                return "breach"
    return MAP_STATES.get(zone_state or "", "unknown")


class Feed:
    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self._warned_at = 0.0
        # Sent by its digest (EVALSHA), as ingest.leases' scripts; loaded again on NOSCRIPT.
        self._append = redis.register_script(_APPEND_PROTECTED) if redis is not None else None

    async def publish(
        self,
        judged: Sequence[Judged],
        alerts: list[dict[str, Any]],
        engine: Engine,
        protected: Sequence[proximity.Sighting] = (),
    ) -> None:
        """Positions to the map, alerts to the console, and trusted sightings to
        SIGHTINGS, the protected persons' (`protected`: to the proximity check only) as
        an entry for each person after the batch's."""
        if self.redis is None or not (judged or alerts or protected):
            return
        latest: dict[str, Judged] = {}
        for j in judged:
            if j.fix.has_position and not j.flags & (Quality.DUPLICATE | Quality.JUMP):
                seen = latest.get(j.supervisee)
                if seen is None or j.fix.ts > seen.fix.ts:
                    latest[j.supervisee] = j
        positions = [
            {
                "supervisee": j.supervisee,
                "device": j.fix.device,
                "ts": iso(j.fix.ts),
                "lat": j.fix.lat,
                "lon": j.fix.lon,
                "acc": j.fix.acc,
                "batt": j.fix.batt,
                "state": person_state(engine, j.supervisee, zone_state(j)),
            }
            for j in latest.values()
        ]
        try:
            pipe = self.redis.pipeline(transaction=False)
            if positions:
                # Each position encoded once, for the hash and for the message alike.
                encoded: dict[Any, bytes] = {
                    str(p["supervisee"]): msgspec.json.encode(p) for p in positions
                }
                pipe.hset(LATEST, mapping=encoded)
                items = b",".join(encoded.values())
                pipe.publish(
                    channel(self.redis, CHANNEL), b'{"kind":"positions","items":[' + items + b"]}"
                )
            for change in alerts:
                pipe.publish(channel(self.redis, CHANNEL), alert_message(change))
            rules = engine.rules
            if rules.no_contact or rules.gathering is not None or rules.protected:
                sightings = [s for j in judged if (s := proximity.sighting(j)) is not None]
                if sightings:
                    pipe.xadd(
                        SIGHTINGS,
                        {"s": msgspec.msgpack.encode(sightings)},
                        maxlen=SIGHTINGS_KEPT,
                        approximate=True,
                    )
                await self._protected(pipe, protected)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("Redis fan-out failed (%s); live updates paused, data is safe", exc)

    async def _protected(self, pipe: Any, protected: Sequence[proximity.Sighting]) -> None:
        assert self._append is not None  # there is a Redis to publish to
        people: dict[str, list[proximity.Sighting]] = {}
        for s in protected:
            people.setdefault(s.person, []).append(s)
        for person, sightings in people.items():
            keys = (SIGHTINGS, ENDED, ENTRIES + person)
            encoded = msgspec.msgpack.encode(sightings)
            await self._append(keys=keys, args=[person, encoded, SIGHTINGS_KEPT], client=pipe)
