"""Commit receipts: how a sender that waits for the commit learns of it.

A phone speaking OsmAnd over HTTP must get its 200 only once what it sent is committed
(spec 4.1b), but the request reaches a listener that may not judge the phone's wearer: the
listener publishes it on `osmand/<device>` for the shard that does (docs/scaling.md). That
shard's ingest, after committing the batch the message was in, sends one receipt per such
message on a PostgreSQL notification channel, and every listener hears it.

A receipt names the message by a hash of its topic and payload, so a phone's retry of the
same request is answered by whichever copy is committed first, and says whether ingest
rejected the message (the listener answers 400 then). Receipts are not the record: one
lost (a listener reconnecting, ingest dying between commit and notification) costs the
phone a timeout and a retry, which is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

import asyncpg
import msgspec

from ingest import topics
from ingest.decode import Rejection
from storage.db import FAILED as DB_FAILED

log = logging.getLogger("fencewatch.ingest")

CHANNEL = "fencewatch_committed"
# Topics whose senders wait for the commit: OsmAnd requests the listener published.
AWAITED = topics.osmand("")
NOTICE_BYTES = 7000  # a PostgreSQL notification carries at most 8000 bytes
REASON_CHARS = 300
RECONNECT_S = 2.0

# (message key, the reason ingest rejected it, or None)
Receipt = tuple[str, str | None]


def awaited(topic: str) -> bool:
    return topic.startswith(AWAITED)


def key(topic: str, payload: bytes) -> str:
    return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=10).hexdigest()


def receipt(topic: str, payload: bytes, rejections: Sequence[Rejection]) -> Receipt:
    reason = None
    if rejections:
        reason = "; ".join(f"{r.reason}: {r.detail}" for r in rejections)[:REASON_CHARS]
    return key(topic, payload), reason


def notices(receipts: Sequence[Receipt]) -> list[str]:
    """The receipts as notification payloads, each under the size limit."""
    out: list[str] = []
    chunk: list[Receipt] = []
    size = 2
    for r in receipts:
        grow = len(msgspec.json.encode(r)) + 1
        if chunk and size + grow > NOTICE_BYTES:
            out.append(msgspec.json.encode(chunk).decode())
            chunk, size = [], 2
        chunk.append(r)
        size += grow
    if chunk:
        out.append(msgspec.json.encode(chunk).decode())
    return out


async def send(pool: asyncpg.Pool, receipts: Sequence[Receipt]) -> None:
    """Notify every listener; never raises (the phone's retry covers a lost receipt)."""
    try:
        async with pool.acquire() as conn:
            for notice in notices(receipts):
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, notice)
    except Exception as exc:
        log.warning("commit receipts not sent (%s); the phones will retry", exc)


class Receipts:
    """The listener's side: waits on the channel and settles whoever expects a receipt."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.listening = False
        self._waiting: dict[str, list[asyncio.Future[str | None]]] = {}

    def expect(self, message_key: str) -> asyncio.Future[str | None]:
        """A future for the receipt; ask before publishing, so a quick commit is not missed."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(message_key, []).append(future)
        return future

    def forget(self, message_key: str, future: asyncio.Future[str | None]) -> None:
        waiting = self._waiting.get(message_key, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiting.pop(message_key, None)

    def _heard(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            heard = msgspec.json.decode(str(payload), type=list[Receipt])
        except msgspec.DecodeError:
            log.warning("a commit receipt that is not one: %.80r", payload)
            return
        for message_key, reason in heard:
            for future in self._waiting.pop(message_key, []):
                if not future.done():
                    future.set_result(reason)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        while True:
            try:
                async with self.pool.acquire() as conn:
                    lost = asyncio.Event()
                    conn.add_termination_listener(lambda _, lost=lost: lost.set())
                    await conn.add_listener(CHANNEL, self._heard)
                    self.listening = True
                    try:
                        await lost.wait()
                    finally:
                        self.listening = False
                        if not conn.is_closed():
                            await conn.remove_listener(CHANNEL, self._heard)
            except DB_FAILED as exc:
                log.warning("commit receipts: database unavailable (%s); retrying", exc)
            await asyncio.sleep(RECONNECT_S)
