"""Request body limits, before anything is parsed: 1 MiB for every request but zone uploads,
which carry boundary files (16 MiB; geofence.limits caps their vertices). A larger body is
refused with 413 — from its Content-Length at once, or as soon as a body sent without one
grows past the limit — so no request can fill memory, the case record or the audit log."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_MAX = 1 << 20
ZONES_BODY_MAX = 16 << 20
_ZONE_UPLOAD = re.compile(r"^/api/v1/zones/[^/]+$")


def body_limit(method: str, path: str) -> int:
    return ZONES_BODY_MAX if method in ("PUT", "POST") and _ZONE_UPLOAD.match(path) else BODY_MAX


def _too_large(limit: int) -> str:
    return f"request body over {limit} bytes, the limit for this request"


class BodyLimit:
    """ASGI middleware enforcing `body_limit`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse({"error": _too_large(limit), "detail": None}, 413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised into the route reading the body: the API's error handler
                    # answers it like any other refusal.
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)
