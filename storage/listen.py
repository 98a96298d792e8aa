"""The loop of a background worker that PostgreSQL notifications wake (alerts.outbox,
alerts.escalation): a pass over what is due, then a pause until the next thing falls due,
a notification on the worker's channel comes, or the service stops.

A notification only says "look now": the work is found by querying, so one missed (say
while the listening connection is replaced) costs at most one pause, never the work. A
database outage is logged and ridden out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from storage.db import FAILED


class WakeLoop:
    """Runs one worker's passes; `wanted` picks the notifications that concern it by
    their payload (all of them by default)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        *,
        poll_interval: float,
        log: logging.Logger,
        name: str,
        wanted: Callable[[object], bool] = lambda _payload: True,
    ) -> None:
        self.pool = pool
        self.channel = channel
        self.poll_interval = poll_interval
        self._log = log
        self._name = name
        self._wanted = wanted
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Cut the current pause short, as a notification would."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, one_pass: Callable[[], Awaitable[float]]) -> None:
        """Call `one_pass` until `stop` is set, pausing after each for the seconds it
        returns (at most; a notification or `stop` ends the pause early)."""
        while not stop.is_set():
            try:
                async with self.pool.acquire() as listener:
                    await listener.add_listener(self.channel, self._notified)
                    try:
                        while not stop.is_set() and not listener.is_closed():
                            self._wake.clear()  # before looking: what commits meanwhile wakes us
                            await self.pause(stop, await one_pass())
                    finally:
                        await listener.remove_listener(self.channel, self._notified)
            except FAILED as exc:
                self._log.warning("%s: database unavailable (%s); retrying", self._name, exc)
                await self.pause(stop, self.poll_interval)

    async def pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep up to `seconds`; return early when stopped or woken."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(
                waits, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for wait in waits:
                wait.cancel()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if self._wanted(payload):
            self._wake.set()
