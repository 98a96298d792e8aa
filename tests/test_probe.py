"""api.probe: what an ingest or scheduler process answers on FENCEWATCH_HTTP, and what an
ingest worker does without loading (docs/benchmarks.md, "Worker memory, eighth round")."""

from __future__ import annotations

import subprocess
import sys

import httpx

from api.probe import create_probe_app


async def _get(health: dict[str, bool] | Exception, path: str) -> httpx.Response:
    async def check() -> dict[str, bool]:
        if isinstance(health, Exception):
            raise health
        return health

    transport = httpx.ASGITransport(app=create_probe_app(check))
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        return await client.get(path)


async def test_healthz_names_what_is_down() -> None:
    up = await _get({"ingest": True, "database": True}, "/healthz")
    assert up.status_code == 200
    assert up.json() == {"ok": True, "components": {"ingest": True, "database": True}, "failed": []}
    down = await _get({"ingest": True, "redis": False, "broker": False}, "/healthz")
    assert down.status_code == 503
    assert down.json()["failed"] == ["broker", "redis"]
    broken = await _get(RuntimeError("pool closed"), "/healthz")
    assert broken.status_code == 503
    assert broken.json()["failed"] == ["health_check"]


async def test_metrics_list_fencewatch_series_and_nothing_else_is_served() -> None:
    metrics = await _get({}, "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "fencewatch_fixes_stored" in metrics.text
    assert (await _get({}, "/api/v1/alerts")).status_code == 404


def test_an_ingest_worker_loads_neither_the_api_framework_nor_delivery() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, fencewatch.service; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = {"fastapi", "pydantic", "starlette", "httpx", "aiosmtplib", "alerts.alerting"}
    assert heavy.isdisjoint(loaded)
