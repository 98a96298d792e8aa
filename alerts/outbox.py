"""Transactional outbox: notifications are written with the change they announce and
delivered afterwards, retried until they get through.

`enqueue` writes a row inside the transaction that changes the alert, so a notification
exists exactly when its change was committed. `OutboxWorker` sends due rows through the
sender of their channel. Rows of one (channel, recipient) go out in id order, one at a
time: a later row waits while an earlier one is undelivered. Callers that need that order
across transactions get it by locking what they change before enqueueing (as an alert
update does), so that ids follow commit order.

Delivery is at least once: a worker that dies after sending but before recording it
sends again once its claim lease runs out. Receivers deduplicate by `delivery_id`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import msgspec

from fencewatch.metrics import NOTIFICATIONS
from storage.db import FAILED as DB_FAILED
from storage.db import Conn
from storage.listen import WakeLoop

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "fencewatch_outbox"


class OutboxMessage(msgspec.Struct, frozen=True):
    id: int
    channel: str
    recipient: str
    payload: dict[str, Any]
    attempts: int  # counting the one under way


class Sender(Protocol):
    async def send(self, message: OutboxMessage) -> None:
        """Deliver `message` or raise: any exception means "not delivered, retry later"."""


async def enqueue(conn: Conn, channel: str, payload: dict[str, Any], recipient: str = "") -> None:
    """Queue `payload` for `channel`. Call it inside the transaction making the change:
    the row and the wake-up of the workers take effect at its commit.

    A `delivery_id` is added when the payload has none.
    """
    await enqueue_each(conn, channel, [(payload, recipient)])


async def enqueue_each(
    conn: Conn, channel: str, queued: Sequence[tuple[dict[str, Any], str]]
) -> None:
    """`enqueue` each (payload, recipient) of `queued`, in their order, with one insert."""
    if not queued:
        return
    bodies = []
    for payload, _ in queued:
        body = {**payload}
        body.setdefault("delivery_id", str(uuid.uuid4()))
        bodies.append(msgspec.json.encode(body).decode())
    # Sent as text and cast by the server, so this works whether or not the connection
    # has a jsonb codec (storage.db's pool has one).
    await conn.execute(
        "INSERT INTO outbox (channel, recipient, payload)"
        " SELECT $1, q.recipient, q.payload::jsonb"
        " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS q(recipient, payload, i)"
        " ORDER BY q.i",
        channel,
        [recipient for _, recipient in queued],
        bodies,
    )
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, channel)


# A row may be sent only while it is the first undelivered one of its stream.
_HEAD = """
    o.delivered_at IS NULL AND o.channel = ANY($1::text[])
    AND NOT EXISTS (
        SELECT FROM outbox e
        WHERE e.delivered_at IS NULL AND e.channel = o.channel
          AND e.recipient = o.recipient AND e.id < o.id)
"""

# Claiming pushes next_attempt_at out by the lease and commits at once, so no transaction
# stays open while a receiver is slow; a worker that dies loses its claim when it lapses.
_CLAIM = f"""
UPDATE outbox
SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT o.id FROM outbox o
    WHERE {_HEAD} AND o.next_attempt_at <= now()
    ORDER BY o.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED)
RETURNING id, channel, recipient, payload::text AS payload, attempts
"""

_SECONDS_TO_NEXT = f"""
SELECT extract(epoch FROM min(o.next_attempt_at) - now()) FROM outbox o WHERE {_HEAD}
"""

_DELIVERED = "UPDATE outbox SET delivered_at = now(), last_error = NULL WHERE id = $1"

_RETRY_LATER = """
UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
WHERE id = $1
"""


class OutboxWorker:
    """Delivers outbox rows of the channels it has senders for, until stopped.

    Several workers (in one process or many) may run against one database.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        senders: Mapping[str, Sender],
        *,
        poll_interval: float = 30.0,
        lease: float = 120.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        batch: int = 50,
    ) -> None:
        if not senders:
            raise ValueError("OutboxWorker needs at least one channel → sender")
        self._pool = pool
        self._senders = dict(senders)
        self._poll_interval = poll_interval
        self._lease = lease
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._batch = batch
        # Woken by enqueue's notification when it names a channel this worker sends.
        self._loop = WakeLoop(
            pool,
            NOTIFY_CHANNEL,
            poll_interval=poll_interval,
            log=log,
            name="outbox",
            wanted=lambda channel: channel in self._senders,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; rides out database outages."""
        await self._loop.run(stop, self._pass)

    async def deliver_due(self) -> int:
        """Try every row that is due now, once; returns how many were tried."""
        rows = await self._pool.fetch(_CLAIM, list(self._senders), self._lease, self._batch)
        # Each claimed row heads its own stream, so sending them together keeps the order.
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _pass(self) -> float:
        """Deliver what is due; the seconds until more is (none while rows remain)."""
        if await self.deliver_due():
            return 0.0
        seconds = await self._pool.fetchval(_SECONDS_TO_NEXT, list(self._senders))
        return self._poll_interval if seconds is None else float(seconds)

    async def _deliver(self, row: asyncpg.Record) -> None:
        message = OutboxMessage(
            row["id"],
            row["channel"],
            row["recipient"],
            msgspec.json.decode(row["payload"]),
            row["attempts"],
        )
        try:
            await self._senders[message.channel].send(message)
        except Exception as exc:
            NOTIFICATIONS.labels(message.channel, "failed").inc()
            doublings = min(message.attempts - 1, 30)
            delay = min(self._backoff_cap, self._backoff_base * 2**doublings)
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "outbox: %s #%d to %r failed (attempt %d, next in %.1fs): %s",
                message.channel,
                message.id,
                message.recipient,
                message.attempts,
                delay,
                error,
            )
            await self._record(_RETRY_LATER, message.id, delay, error)
        else:
            NOTIFICATIONS.labels(message.channel, "delivered").inc()
            await self._record(_DELIVERED, message.id)

    async def _record(self, query: str, *args: object) -> None:
        try:
            await self._pool.execute(query, *args)
        except DB_FAILED as exc:
            log.warning(
                "outbox: could not record an outcome (%s); resent when the lease lapses", exc
            )
