"""What the service's live feed shows, and when: raised alerts (fix → alert) and the
crossers' positions (fix → stored, since positions are published after commit).

The feed is Redis pub/sub channel `fencewatch:feed:<db>` (alerts.feed): `{"kind":"alert",
"event":"raised","alert":{...}}` and `{"kind":"positions","items":[...]}`. Each message
is stamped with the wall time it was read; latency is that minus the wall time the
generator sent the fix (same machine, same clock)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

import msgspec
from redis.asyncio import Redis

from alerts.feed import CHANNEL
from fencewatch.channels import channel
from fencewatch.timefmt import epoch_ms


class _Item(msgspec.Struct):
    device: str
    ts: str


class _Alert(msgspec.Struct):
    device: str
    ts: str
    type: str


class _Message(msgspec.Struct):
    kind: str
    event: str = ""
    alert: _Alert | None = None
    items: list[_Item] = []


_decode = msgspec.json.Decoder(_Message).decode


def iso_ms(value: str) -> int:
    return epoch_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


class FeedWatch:
    def __init__(self, redis_url: str, crossers: set[str]) -> None:
        self.redis = Redis.from_url(redis_url)
        self.crossers = crossers
        # (device, device ts ms, wall time seen)
        self.raised: list[tuple[str, int, float]] = []
        self.stored: list[tuple[str, int, float]] = []
        self.raised_types: dict[str, int] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel(self.redis, CHANNEL))
        self._subscribed.set()
        async for message in pubsub.listen():
            seen = time.time()
            msg = _decode(message["data"])
            if msg.kind == "alert" and msg.event == "raised" and msg.alert is not None:
                a = msg.alert
                self.raised_types[a.type] = self.raised_types.get(a.type, 0) + 1
                self.raised.append((a.device, iso_ms(a.ts), seen))
            for item in msg.items:
                if item.device in self.crossers:
                    self.stored.append((item.device, iso_ms(item.ts), seen))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.redis.aclose()
