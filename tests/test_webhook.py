"""Outbox delivery and the signed webhook (spec 4.3), on the real PostgreSQL with a real
HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import msgspec
import pytest
from prometheus_client import REGISTRY

from alerts.outbox import NOTIFY_CHANNEL, OutboxMessage, OutboxWorker, enqueue
from alerts.webhook import CHANNEL, WebhookSender
from fencewatch.config import ConfigError
from fencewatch.embedded import free_port
from storage.db import open_pool

SECRET = "s3cret-丽水"
ALERT = {
    "id": 7,
    "type": "exclusion_enter",
    "supervisee": "S1",
    "device": "T1",
    "ts": "2025-11-27T10:00:00Z",
    "status": "open",
    "late": False,
}
BOUND = 30.0  # seconds to give up after, so a broken worker fails the test instead of hanging


class Receiver:
    """A webhook receiver: records every request and answers with `status`."""

    def __init__(self, port: int, status: int = 200) -> None:
        self.port = port
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.requests.append((headers, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._handler = Handler

    @contextlib.contextmanager
    def listening(self) -> Iterator[Receiver]:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def payloads(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(body) for _, body in self.requests]


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(BOUND):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(worker: OutboxWorker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def sender() -> AsyncIterator[tuple[WebhookSender, Receiver]]:
    receiver = Receiver(free_port())
    webhook = WebhookSender(f"http://127.0.0.1:{receiver.port}/hook", SECRET)
    try:
        yield webhook, receiver
    finally:
        await webhook.aclose()


async def alert_changed(pool: asyncpg.Pool, event: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, CHANNEL, {"event": event, "alert": ALERT})


def metric(outcome: str) -> float:
    labels = {"channel": CHANNEL, "outcome": outcome}
    return REGISTRY.get_sample_value("fencewatch_notifications_total", labels) or 0.0


async def test_delivers_signed_json(
    pool: asyncpg.Pool, sender: tuple[WebhookSender, Receiver]
) -> None:
    webhook, receiver = sender
    delivered_before = metric("delivered")
    worker = OutboxWorker(pool, {CHANNEL: webhook})
    with receiver.listening():
        async with running(worker):
            await alert_changed(pool, "raised")
            await until(
                lambda: pool.fetchval("SELECT bool_and(delivered_at IS NOT NULL) FROM outbox")
            )

    [(headers, body)] = receiver.requests
    assert headers["content-type"] == "application/json"
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-fencewatch-signature"] == f"sha256={expected}"
    [payload] = receiver.payloads()
    assert payload["event"] == "raised" and payload["alert"] == ALERT
    assert uuid.UUID(payload["delivery_id"])
    [row] = await pool.fetch("SELECT attempts, last_error FROM outbox")
    assert (row["attempts"], row["last_error"]) == (1, None)
    assert metric("delivered") == delivered_before + 1


async def test_receiver_down_then_up_gets_each_message_once_in_order(
    pool: asyncpg.Pool, sender: tuple[WebhookSender, Receiver]
) -> None:
    webhook, receiver = sender
    failed_before = metric("failed")
    events = ["raised", "escalated", "acknowledged", "escalated", "resolved"]
    for event in events:
        await alert_changed(pool, event)
    sent = [
        r["payload"]["delivery_id"] for r in await pool.fetch("SELECT * FROM outbox ORDER BY id")
    ]

    worker = OutboxWorker(pool, {CHANNEL: webhook}, backoff_base=0.02, backoff_cap=0.2)
    async with running(worker):
        await until(lambda: pool.fetchval("SELECT attempts >= 3 FROM outbox ORDER BY id LIMIT 1"))
        # Nobody is listening: the first message is retried, and nothing overtakes it.
        tried = [r["attempts"] for r in await pool.fetch("SELECT attempts FROM outbox ORDER BY id")]
        assert tried[0] >= 3 and tried[1:] == [0, 0, 0, 0]
        with receiver.listening():
            await until(
                lambda: pool.fetchval("SELECT bool_and(delivered_at IS NOT NULL) FROM outbox")
            )

    assert [p["delivery_id"] for p in receiver.payloads()] == sent
    assert [p["event"] for p in receiver.payloads()] == events
    assert metric("failed") >= failed_before + 3


async def test_error_answer_is_retried_with_the_same_signed_body(
    pool: asyncpg.Pool, sender: tuple[WebhookSender, Receiver]
) -> None:
    webhook, receiver = sender
    receiver.status = 500
    worker = OutboxWorker(pool, {CHANNEL: webhook}, backoff_base=0.02, backoff_cap=0.2)
    with receiver.listening():
        async with running(worker):
            await alert_changed(pool, "raised")
            await until(lambda: pool.fetchval("SELECT attempts >= 3 FROM outbox"))
            assert "HTTP 500" in await pool.fetchval("SELECT last_error FROM outbox")
            receiver.status = 204
            await until(lambda: pool.fetchval("SELECT delivered_at IS NOT NULL FROM outbox"))

    assert len(receiver.requests) >= 4
    assert (
        len({(headers["x-fencewatch-signature"], body) for headers, body in receiver.requests}) == 1
    )
    assert await pool.fetchval("SELECT last_error FROM outbox") is None


async def test_no_answer_is_retried(pool: asyncpg.Pool) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads the request, never answers
        await reader.read(1 << 16)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    webhook = WebhookSender(f"http://127.0.0.1:{port}/hook", SECRET, timeout=0.2)
    worker = OutboxWorker(pool, {CHANNEL: webhook}, backoff_base=0.02, backoff_cap=0.2)
    try:
        async with running(worker):
            await alert_changed(pool, "raised")
            await until(lambda: pool.fetchval("SELECT attempts >= 2 FROM outbox"))
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        await webhook.aclose()
    row = await pool.fetchrow("SELECT delivered_at, last_error FROM outbox")
    assert row is not None and row["delivered_at"] is None
    assert "Timeout" in row["last_error"]


class Recorder:
    """A channel's sender that fails for one recipient and records the rest."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.sent: list[tuple[str, int]] = []

    async def send(self, message: OutboxMessage) -> None:
        if message.recipient == self.failing:
            raise ConnectionError("unreachable")
        self.sent.append((message.recipient, message.payload["n"]))


async def test_a_stuck_recipient_holds_back_only_its_own_messages(pool: asyncpg.Pool) -> None:
    recorder = Recorder(failing="13800000001")
    async with pool.acquire() as conn, conn.transaction():
        for n in (1, 2):
            await enqueue(conn, "sms", {"n": n}, recipient="13800000001")
            await enqueue(conn, "sms", {"n": n}, recipient="13800000002")
        await enqueue(conn, "downlink", {"n": 1}, recipient="T1")  # no sender here

    worker = OutboxWorker(pool, {"sms": recorder}, backoff_base=0.02, backoff_cap=0.2)
    async with running(worker):
        await until(
            lambda: pool.fetchval("SELECT count(*) = 2 FROM outbox WHERE delivered_at IS NOT NULL")
        )
        await until(lambda: pool.fetchval("SELECT max(attempts) >= 2 FROM outbox"))

    assert recorder.sent == [("13800000002", 1), ("13800000002", 2)]
    attempts = await pool.fetch("SELECT recipient, payload, attempts FROM outbox ORDER BY id")
    waiting = {(r["recipient"], r["payload"]["n"]): r["attempts"] for r in attempts}
    assert waiting[("13800000001", 1)] >= 2
    assert waiting[("13800000001", 2)] == 0 and waiting[("T1", 1)] == 0


async def test_new_rows_wake_the_worker(pool: asyncpg.Pool) -> None:
    recorder = Recorder(failing="")
    # With an hour between polls, rows enqueued while it waits get out only through NOTIFY.
    worker = OutboxWorker(pool, {"sms": recorder}, poll_interval=3600)
    async with running(worker):
        for n in (1, 2, 3):
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, "sms", {"n": n}, recipient="13800000002")
            await until(
                lambda: pool.fetchval("SELECT bool_and(delivered_at IS NOT NULL) FROM outbox")
            )
    assert recorder.sent == [("13800000002", 1), ("13800000002", 2), ("13800000002", 3)]


async def test_enqueue_is_part_of_the_callers_transaction(pg_dsn: str, pool: asyncpg.Pool) -> None:
    heard: asyncio.Queue[object] = asyncio.Queue()
    listener = await asyncpg.connect(pg_dsn)
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    conn = await asyncpg.connect(pg_dsn)  # a plain connection, without the pool's jsonb codec
    try:
        with pytest.raises(RuntimeError, match="rolled back"):
            async with conn.transaction():
                await enqueue(conn, CHANNEL, {"event": "raised", "alert": ALERT})
                raise RuntimeError("rolled back")
        async with conn.transaction():
            await enqueue(conn, CHANNEL, {"event": "cleared", "alert": ALERT, "delivery_id": "d-1"})
        # Notifications arrive in commit order: had the rolled-back one been sent, it
        # would come first.
        assert await asyncio.wait_for(heard.get(), BOUND) == CHANNEL
        assert heard.empty()
    finally:
        await conn.close()
        await listener.close()
    [row] = await pool.fetch("SELECT payload FROM outbox")
    assert row["payload"] == {"event": "cleared", "alert": ALERT, "delivery_id": "d-1"}


def test_webhook_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="http"):
        WebhookSender("ftp://example.org/hook", SECRET)
    with pytest.raises(ConfigError, match="FENCEWATCH_WEBHOOK_SECRET"):
        WebhookSender("https://example.org/hook", "")
