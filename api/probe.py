"""What a process without the API role serves on FENCEWATCH_HTTP: only /healthz and
/metrics, as a bare ASGI app. Apart from api.app, whose routes bring the reports', the
evidence bundles' and the archive's libraries (about 90 MB an ingest worker has no use
for), and from FastAPI and pydantic too: with them (and with the alerts' delivery, which
only the scheduler runs) an ingest worker carried some 20 MB of modules it never used
(docs/benchmarks.md, "Worker memory, eighth round")."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

# Registers fencewatch's metrics, so /metrics lists them before the first fix arrives.
import fencewatch.metrics  # noqa: F401

log = logging.getLogger(__name__)

# Component name (ingest, database, redis, broker) → reachable.
HealthCheck = Callable[[], Awaitable[dict[str, bool]]]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


async def health_report(check: HealthCheck) -> tuple[dict[str, Any], int]:
    """/healthz's body and status: 200 when every component is reachable, else 503 naming
    those that are not (a check that fails outright counts as one down)."""
    try:
        components = await check()
    except Exception:
        log.exception("health check failed")
        components = {"health_check": False}
    failed = sorted(name for name, up in components.items() if not up)
    body = {"ok": not failed, "components": components, "failed": failed}
    return body, 503 if failed else 200


def _json(body: Any) -> bytes:
    # As the API's JSONResponse renders it, so both processes answer alike.
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def create_probe_app(health: HealthCheck) -> Asgi:
    """Health and metrics of an ingest or scheduler process, for the orchestrator's health
    check and Prometheus: a scaled deployment watches every worker, not only the API."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path not in ("/healthz", "/metrics"):
            status, kind, body = 404, "application/json", _json({"detail": "Not Found"})
        elif scope["method"] != "GET":
            status, kind, body = 405, "application/json", _json({"detail": "Method Not Allowed"})
        elif path == "/healthz":
            report, status = await health_report(health)
            kind, body = "application/json", _json(report)
        else:
            status, kind, body = 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
