"""The operator console (监控中心): the single-page app built from console/ into api/static,
served at `/`, and what the page needs beyond the /api/v1 resources — who the token
belongs to, the map settings, and a live feed of positions and alert changes.

Monitoring centres sit on isolated networks, so the page is sent with a Content Security
Policy that lets it load nothing but this service (and the configured tile server).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.staticfiles import StaticFiles

from alerts.feed import CHANNEL
from api import audit
from api.auth import REVOKED_CHANNEL, Permission, Principal, User, authenticate, hash_token
from api.context import ApiContext
from api.errors import ApiError
from fencewatch.channels import channel
from fencewatch.config import Settings
from storage.repo import people as people_repo

STATIC = Path(__file__).resolve().parent / "static"
BUILD_HINT = "cd console && npm ci && npm run build"
AUTH_WAIT_S = 10.0
# WebSocket close codes in the 4000–4999 range are the application's own.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FEED_LOST = 4503
CLOSE_RESTARTING = 1012  # RFC 6455 "service restart": the console reconnects
# How often an open feed checks its token again (expiry, or a revoke it was not told of).
RECHECK_S = 60.0


class MapSettings(BaseModel):
    """Base map tiles are off unless configured: with none the map shows the vector layers
    alone, which works on any isolated network."""

    tiles: str | None = Field(
        None, description="tile URL template with {z}/{x}/{y} (FENCEWATCH_TILES_URL)"
    )
    tiles_crs: Literal["wgs84", "gcj02"] = Field(
        "wgs84",
        description="the tiles' CRS (FENCEWATCH_TILES_CRS); on gcj02 tiles the console draws"
        " everything converted to GCJ-02, while the data stays WGS-84",
    )
    subdomains: str = Field(
        "abc",
        description="what {s} in the template takes, one character each"
        " (FENCEWATCH_TILES_SUBDOMAINS)",
    )
    attribution: str = Field("", description="FENCEWATCH_TILES_ATTRIBUTION")

    @classmethod
    def of(cls, settings: Settings) -> MapSettings:
        return cls.model_validate(
            {
                "tiles": settings.tiles_url,
                "tiles_crs": settings.tiles_crs,
                "subdomains": settings.tiles_subdomains,
                "attribution": settings.tiles_attribution,
            }
        )


class Abilities(BaseModel):
    work_alerts: bool
    manage: bool
    leave: bool
    suspend: bool = Field(description="ask for or revoke a suspension window (暂停告警)")
    approve_suspension: bool


class Session(BaseModel):
    subject: str
    role: str
    office: str | None
    can: Abilities = Field(description="what the console should offer this token")
    map: MapSettings


def _may(user: Principal, permission: Permission) -> bool:
    try:
        user.require(permission)
    except ApiError:
        return False
    return True


def mount(app: FastAPI, prefix: str, settings: Settings) -> None:
    """Add the console's API routes under `prefix` and the page at `/`, with the map
    `settings` give. The page's own paths are `/` and `/assets/…` only, so nothing else of
    the app is shadowed."""
    map_settings = MapSettings.of(settings)
    csp = _content_security_policy(map_settings)

    @app.get(f"{prefix}/session", response_model=Session, tags=["console"])
    async def get_session(user: User) -> Session:
        """Who this token is and what the console should offer it."""
        can = Abilities(
            work_alerts=_may(user, Permission.WORK_ALERTS),
            manage=_may(user, Permission.MANAGE),
            leave=_may(user, Permission.LEAVE),
            suspend=_may(user, Permission.SUSPEND),
            approve_suspension=_may(user, Permission.APPROVE_SUSPENSION),
        )
        return Session(
            subject=user.subject, role=user.role, office=user.office, can=can, map=map_settings
        )

    app.add_api_websocket_route(f"{prefix}/feed", feed)
    app.mount("/assets", StaticFiles(directory=STATIC / "assets", check_dir=False), "console")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC / "index.html"
        if not page.is_file():
            return PlainTextResponse(
                f"The console is not built. In the repository, run: {BUILD_HINT}\n",
                status_code=503,
            )
        # Asset names carry content hashes; only the page itself must never be cached.
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": csp}
        return FileResponse(page, headers=headers)


def _content_security_policy(settings: MapSettings) -> str:
    images = "'self' data:"  # data: for the images inlined in Leaflet's stylesheet
    if settings.tiles:
        parts = urlsplit(settings.tiles)
        if parts.scheme and parts.netloc:
            # A {s} subdomain placeholder ("t{s}.example.cn") allows any subdomain.
            first, dot, rest = parts.netloc.partition(".")
            host = f"*{dot}{rest}" if "{s}" in first else parts.netloc
            images += f" {parts.scheme}://{host}"
    return "; ".join(
        (
            "default-src 'self'",
            "connect-src 'self'",
            f"img-src {images}",
            # Leaflet positions its panes with inline style attributes.
            "style-src 'self' 'unsafe-inline'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


async def feed(ws: WebSocket) -> None:
    """`fencewatch:feed:<db>` (alerts.feed) relayed to one console, limited to its people.

    Browsers cannot set headers on a WebSocket, and a token in the URL ends up in logs,
    so the first message must be `{"token": "..."}`. The token is checked again every
    RECHECK_S and at once when it is revoked (api.auth.REVOKED_CHANNEL), so a revoked or
    expired token stops receiving. Close codes: 4401 for a missing, bad, revoked or expired
    token, 4503 when the feed from Redis is lost, 1012 when the service stops (the console
    reconnects and reloads).
    """
    ctx: ApiContext = ws.app.state.ctx
    await ws.accept()
    hello = await _hello(ctx, ws)
    if hello is None:
        return
    user, credentials = hello
    async with ctx.pool.acquire() as conn:
        # None = every office; otherwise the people this token may see, as of connecting
        # (the console reconnects on reload, which picks up roster changes).
        people = (
            None
            if user.offices is None
            else frozenset(await people_repo.active_supervisee_ids(conn, user.offices))
        )
        await audit.record(conn, user, "location.feed", "feed")
    pubsub = ctx.redis.pubsub(ignore_subscribe_messages=True)
    try:
        # Subscribed before "hello": the console reloads its snapshot on hello, so nothing
        # published in between is missed.
        revoked_channel = channel(ctx.redis, REVOKED_CHANNEL)
        await pubsub.subscribe(channel(ctx.redis, CHANNEL), revoked_channel)
        await ws.send_json({"kind": "hello", "subject": user.subject, "role": user.role})
        revoked = asyncio.Event()
        relay = asyncio.create_task(
            _relay(
                pubsub,
                ws,
                people,
                revoked_channel.encode(),
                hash_token(credentials.credentials),
                revoked,
            )
        )
        closed = asyncio.create_task(_until_closed(ws))
        invalid = asyncio.create_task(_until_invalid(ctx, credentials, revoked))
        stopping = asyncio.create_task(ctx.stopping.wait())
        done, pending = await asyncio.wait(
            {relay, closed, invalid, stopping}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
        if relay in done:
            relay.result()
        if invalid in done:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(CLOSE_UNAUTHORIZED, invalid.result())
        elif stopping in done:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(CLOSE_RESTARTING, "the service is stopping; reconnect")
    except (RedisError, OSError):
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(CLOSE_FEED_LOST, "live feed lost; reconnect")
    finally:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()


async def _hello(
    ctx: ApiContext, ws: WebSocket
) -> tuple[Principal, HTTPAuthorizationCredentials] | None:
    """The caller of the token in the first message, and the token; or None (and the
    socket closed)."""
    try:
        async with asyncio.timeout(AUTH_WAIT_S):
            hello = await ws.receive_json()
        token = hello.get("token") if isinstance(hello, dict) else None
        if not isinstance(token, str):
            raise ApiError(401, 'the first message must be {"token": "<bearer token>"}')
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        return await authenticate(ctx, credentials), credentials
    except WebSocketDisconnect:
        return None
    except (ApiError, TimeoutError, ValueError) as exc:
        reason = exc.error if isinstance(exc, ApiError) else "send the token first"
        await ws.close(CLOSE_UNAUTHORIZED, reason)
        return None


async def _until_invalid(
    ctx: ApiContext, credentials: HTTPAuthorizationCredentials, revoked: asyncio.Event
) -> str:
    """Returns why the token no longer holds: checked every RECHECK_S (expiry, a revoke
    whose announcement was missed) and as soon as a revoke of it is announced."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECHECK_S):
                await revoked.wait()
        revoked.clear()
        try:
            await authenticate(ctx, credentials)
        except ApiError as exc:
            return exc.error


async def _relay(
    pubsub: PubSub,
    ws: WebSocket,
    people: frozenset[str] | None,
    revokes: bytes,
    token_hash: str,
    revoked: asyncio.Event,
) -> None:
    mine = token_hash.encode()
    async for message in pubsub.listen():
        if message["channel"] == revokes:
            if message["data"] == mine:
                revoked.set()
            continue
        text = _scoped(message["data"], people)
        if text is not None:
            await ws.send_text(text)


def _scoped(raw: bytes, people: frozenset[str] | None) -> str | None:
    """The message as text, with only the positions and alerts of `people`; None if
    nothing of it is theirs."""
    if people is None:
        return raw.decode()
    message: dict[str, Any] = msgspec.json.decode(raw)
    if message.get("kind") == "positions":
        items = [p for p in message.get("items", []) if p.get("supervisee") in people]
        return msgspec.json.encode({**message, "items": items}).decode() if items else None
    alert = message.get("alert") or {}
    # A gathering concerns every person it lists (alerts.record._ALERTS_IN_SCOPE).
    mine = [alert.get("supervisee")]
    if alert.get("type") == "gathering":
        mine += (alert.get("detail") or {}).get("people") or []
    return raw.decode() if any(p in people for p in mine) else None


async def _until_closed(ws: WebSocket) -> None:
    """The console sends nothing after its token; this returns when it goes away."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
