"""The links of live Traccar Client phones: each location POSTed to the OsmAnd listener
(spec 4.1b) as the client does, one at a time and in order, until it is answered 200.

A phone keeps what it could not send and sends it again: on a 503 (not committed in time),
a connection refused or a timeout it waits and retries the same request. A 400 is final
(the request is malformed); the real client would retry even that, for ever, which a
simulator has no reason to copy: it counts it and moves on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable

import httpx

from simulators.tag import LiveTag

log = logging.getLogger("fencewatch.simulators")

MAX_QUEUED = 1_000  # a phone's queue; past it the phone holds its fixes (LiveTag's backlog)
TIMEOUT_S = 15.0  # the Android Traccar Client's
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class HttpLink:
    """One phone's `simulators.tag.Link`: `publish` only queues (it is called from the
    fleet's event loop); a task of the phone's own sends."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client
        self.acked = 0  # answered 200
        self.rejected = 0  # answered 400
        self._queue: collections.deque[bytes] = collections.deque()
        self._arrived = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._sender = asyncio.create_task(self._send(), name=f"traccar client {url}")

    def ready(self) -> bool:
        return len(self._queue) < MAX_QUEUED

    def publish(self, topic: str, payload: bytes) -> bool:
        self._queue.append(payload)
        self._arrived.set()
        self._empty.clear()
        return True

    async def drained(self) -> None:
        await self._empty.wait()

    async def _send(self) -> None:
        failures = 0
        while True:
            if not self._queue:
                self._empty.set()
                self._arrived.clear()
                await self._arrived.wait()
                continue
            try:
                r = await self.client.post(
                    self.url, content=self._queue[0], headers={"content-type": "application/json"}
                )
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code in (200, 400):
                self._queue.popleft()
                failures = 0
                if r.status_code == 200:
                    self.acked += 1
                else:
                    self.rejected += 1
                    log.warning("the OsmAnd listener refused a location: %s", r.text)
                continue
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    async def stop(self) -> None:
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)


class TraccarPhones:
    """The fleet's Traccar Client phones, each with its link to `url`."""

    def __init__(self, url: str, tags: Iterable[LiveTag]) -> None:
        self.client = httpx.AsyncClient(timeout=TIMEOUT_S)
        self.links = {t.plan.id: HttpLink(url, self.client) for t in tags if t.plan.osmand}

    @property
    def acked(self) -> int:
        return sum(link.acked for link in self.links.values())

    async def close(self, drain_s: float = 5.0) -> None:
        """Give the queues `drain_s` to empty, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await asyncio.gather(*(link.drained() for link in self.links.values()))
        for link in self.links.values():
            await link.stop()
        await self.client.aclose()
