"""The whole service running in the test's event loop, on the real PostgreSQL, Redis and
Mosquitto, with a device publisher and an API client: what an integrator would see."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
import paho.mqtt.client as mqtt

from api.tokens import create_token
from fencewatch.config import MqttAddress, Settings
from fencewatch.embedded import free_port
from fencewatch.loader import load_scenario
from fencewatch.servers import ServerUrls
from fencewatch.service import Service
from storage.db import open_pool
from tests.kit import lishui_collection

T = TypeVar("T")
WAIT_S = 60.0  # an upper bound for "eventually", not a speed requirement


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    async with asyncio.timeout(WAIT_S):
        while True:
            found = await probe()
            if found:
                return found
            await asyncio.sleep(0.2)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


class Device:
    """A device publishing spec 4.1 messages with QoS 1, waiting for each PUBACK."""

    def __init__(self, mqtt_url: str) -> None:
        address = MqttAddress.parse(mqtt_url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}"
        )
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: Any) -> None:
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_scenario(directory: Path, zones: dict[str, Any], roster: dict[str, Any]) -> Path:
    (directory / "zones.geojson").write_text(json.dumps(zones))
    (directory / "roster.json").write_text(json.dumps(roster))
    return directory


async def load_roster(pg_dsn: str, directory: Path, roster: dict[str, Any]) -> None:
    """The 丽水 counties and `roster` into the database at `pg_dsn` (`fencewatch load`)."""
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        await load_scenario(pool, write_scenario(directory, lishui_collection(), roster))
    finally:
        await pool.close()


class Live:
    def __init__(
        self, service: Service, run: asyncio.Task[None], base: str, token: str, mqtt_url: str
    ) -> None:
        self.service = service
        self.run = run  # the service's run: done once it has stopped
        self.http = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"})
        self.device = Device(mqtt_url)

    async def alerts(self, **params: str) -> list[dict[str, Any]]:
        r = await self.http.get("/api/v1/alerts", params=params)
        r.raise_for_status()
        return list(r.json()["items"])

    async def track(self, supervisee: str, start: str, end: str) -> list[dict[str, Any]]:
        r = await self.http.get(
            f"/api/v1/supervisees/{supervisee}/track", params={"from": start, "to": end}
        )
        r.raise_for_status()
        return list(r.json()["features"])


@asynccontextmanager
async def running(
    pg_dsn: str,
    redis_url: str,
    mqtt_url: str,
    zones: dict[str, Any],
    roster: dict[str, Any],
    tamper: Callable[[asyncpg.Pool], Awaitable[None]] | None = None,
    osmand_port: int | None = None,
    jt808_port: int | None = None,
    settings: dict[str, Any] | None = None,
) -> AsyncIterator[Live]:
    """The service on the loaded scenario; `tamper` changes the database behind the API's
    back before the service starts; with `osmand_port` phones may post OsmAnd there, with
    `jt808_port` JT/T 808 terminals connect there; `settings` are more of its Settings (a
    `client_id` of an earlier run's: its broker session, as a restart has it)."""
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await load_scenario(pool, write_scenario(Path(tmp), zones, roster))
        if tamper is not None:
            await tamper(pool)
        token = await create_token(pool, "operator", subject="test operator")
    finally:
        await pool.close()
    port = free_port()
    # A data directory of the service's own: tests run side by side (pytest-xdist).
    data_dir = tempfile.TemporaryDirectory(prefix="fw-live-")
    own: dict[str, Any] = {
        "http_port": port,
        "client_id": f"fencewatch-test-{uuid.uuid4().hex[:8]}",
        "data_dir": Path(data_dir.name),
    }
    made = Settings(**(own | (settings or {})))
    if osmand_port is not None:
        made = msgspec.structs.replace(made, osmand_host="127.0.0.1", osmand_port=osmand_port)
    if jt808_port is not None:
        made = msgspec.structs.replace(made, jt808_host="127.0.0.1", jt808_port=jt808_port)
    service = Service(made, ServerUrls(pg_dsn, redis_url, mqtt_url, ()))
    task = asyncio.create_task(service.run())
    async with asyncio.timeout(WAIT_S):
        while not service.ready.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    await eventually(lambda: _connected(service), "ingest never connected to the broker")
    live = Live(service, task, f"http://127.0.0.1:{port}", token, mqtt_url)
    try:
        yield live
    finally:
        live.device.close()
        await live.http.aclose()
        service.stop.set()
        try:
            async with asyncio.timeout(WAIT_S):
                await task
        except TimeoutError:
            raise AssertionError("the service did not stop") from None
        data_dir.cleanup()


async def _connected(service: Service) -> bool:
    return service.connected
