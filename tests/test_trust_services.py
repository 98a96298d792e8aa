"""Issue 13's probes of the running pieces, each now refused: a revoked token still on the
live feed, a taken HTTP port leaving a half-started service, webhook requests replayable
for ever, and an embedded Redis any local user could write to. Real PostgreSQL, Redis,
HTTP and processes; docs/security.md lists them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis
import uvicorn
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from alerts.outbox import OutboxMessage
from alerts.signed import (
    SIGNATURE_HEADER,
    SIGNATURE_V2_HEADER,
    TIMESTAMP_HEADER,
    signature,
    verify,
)
from alerts.webhook import WebhookSender
from api import console
from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token, revoke_token
from fencewatch import cli, embedded
from fencewatch.embedded import free_port, start_redis
from storage.db import open_pool
from tests.test_webhook import SECRET, Receiver

BOUND_S = 30.0


@asynccontextmanager
async def api_server(pg_dsn: str, redis_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """The API alone, served on a free loopback port: (pool, ws:// base URL)."""
    pool = await open_pool(pg_dsn, min_size=1, max_size=4)
    client = Redis.from_url(redis_url)

    async def health() -> dict[str, bool]:
        return {"database": True, "redis": True}

    async def rules_changed(_: list[str] | None) -> None:
        return None

    port = free_port()
    app = create_app(ApiContext(pool, client, health, rules_changed))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(BOUND_S):
            while not server.started:  # noqa: ASYNC110 - uvicorn has only the flag
                await asyncio.sleep(0.05)
        yield pool, f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await client.aclose()
        await pool.close()


async def _closed_with(ws: object, token: str) -> tuple[int | None, str]:
    """Send the token, read hello, then wait (bounded) for the server to close the socket."""
    await ws.send(json.dumps({"token": token}))  # type: ignore[attr-defined]
    hello = json.loads(await ws.recv())  # type: ignore[attr-defined]
    assert hello["kind"] == "hello"
    async with asyncio.timeout(BOUND_S):
        await ws.wait_closed()  # type: ignore[attr-defined]
    return ws.close_code, ws.close_reason  # type: ignore[attr-defined]


async def test_the_feed_drops_a_token_revoked_by_the_command(
    pg_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("FENCEWATCH_REDIS_URL", redis_url)
    async with api_server(pg_dsn, redis_url) as (pool, base):
        token = await create_token(pool, "operator", subject="leaver")
        async with connect(base + "/api/v1/feed") as ws:
            revoking = asyncio.create_task(_closed_with(ws, token))
            await asyncio.sleep(0.2)  # connected and subscribed
            # What `fencewatch token revoke` does, in a thread as from the shell.
            assert await asyncio.to_thread(cli.main, ["token", "revoke", token]) == 0
            code, reason = await revoking
    assert (code, reason) == (4401, "token revoked")


async def test_the_feed_rechecks_tokens_it_was_not_told_about(
    pg_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "RECHECK_S", 0.2)
    async with api_server(pg_dsn, redis_url) as (pool, base):
        token = await create_token(pool, "operator", subject="expiring")
        async with connect(base + "/api/v1/feed") as ws:
            waiting = asyncio.create_task(_closed_with(ws, token))
            await asyncio.sleep(0.3)
            await pool.execute(
                "UPDATE api_tokens SET expires_at = now() WHERE subject = 'expiring'"
            )
            code, reason = await waiting
        assert (code, reason) == (4401, "token expired")
        other = await create_token(pool, "operator", subject="revoked quietly")
        async with connect(base + "/api/v1/feed") as ws:
            waiting = asyncio.create_task(_closed_with(ws, other))
            await asyncio.sleep(0.3)
            await revoke_token(pool, other)  # no announcement: the periodic check finds it
            assert await waiting == (4401, "token revoked")


async def test_a_taken_http_port_stops_the_start_at_once(
    pg_empty_dsn: str, redis_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "FENCEWATCH_DATABASE_URL": pg_empty_dsn,
            "FENCEWATCH_REDIS_URL": redis_url,
            "FENCEWATCH_MQTT_URL": mqtt_url,
            "FENCEWATCH_HTTP": f"127.0.0.1:{port}",
            "FENCEWATCH_OSMAND": "off",
            "FENCEWATCH_JT808": "off",
            "FENCEWATCH_DATA_DIR": str(tmp_path),
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "fencewatch.cli", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=BOUND_S,
        )
    assert done.returncode == 1, done.stderr
    assert f"FENCEWATCH_HTTP: cannot listen on 127.0.0.1:{port}" in done.stderr
    # Nothing had started: not even the schema was made, let alone ingest.
    conn = await asyncpg.connect(pg_empty_dsn)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )
    finally:
        await conn.close()


async def test_webhooks_carry_a_timestamped_signature(tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    webhook = WebhookSender(f"http://127.0.0.1:{receiver.port}/hook", SECRET)
    payload = {"event": "raised", "alert": {"id": 1}, "delivery_id": "d-1"}
    try:
        with receiver.listening():
            await webhook.send(OutboxMessage(1, "webhook", "", payload, 1))
    finally:
        await webhook.aclose()
    [(headers, body)] = receiver.requests
    assert body == msgspec.json.encode(payload)
    # Spec 4.3's header, exactly as before.
    assert headers[SIGNATURE_HEADER.lower()] == signature(body, SECRET)
    sent = {SIGNATURE_V2_HEADER: headers[SIGNATURE_V2_HEADER.lower()]}
    stamp = int(headers[TIMESTAMP_HEADER.lower()])
    assert abs(stamp - time.time()) < BOUND_S
    assert verify(body, sent, SECRET)
    assert not verify(body, sent, SECRET, now=stamp + 301)  # replayed after the window
    assert not verify(body + b" ", sent, SECRET)
    assert not verify(body, sent, "another secret")


def test_the_embedded_redis_wants_a_password_nobody_else_can_read(tmp_path: Path) -> None:
    password = embedded.stored_secret(tmp_path / embedded.REDIS_SECRET)
    assert embedded.stored_secret(tmp_path / embedded.REDIS_SECRET) == password
    proc, port = start_redis(tmp_path, password=password)
    try:
        for private in (tmp_path / embedded.REDIS_SECRET, tmp_path / "redis.conf"):
            assert private.stat().st_mode & 0o077 == 0, private
        assert password not in Path(f"/proc/{proc.pid}/cmdline").read_text()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        client = redis.Redis.from_url(embedded.redis_url(tmp_path, port))
        assert client.ping()
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=BOUND_S)
