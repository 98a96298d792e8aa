"""A private stack for fault tests — PostgreSQL, Redis and Mosquitto of the test's own that
it may restart, kill and flush — and `fencewatch serve` as a separate process to kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from fencewatch.embedded import (
    ANONYMOUS_FOR_TESTS,
    free_port,
    start_mosquitto,
    start_redis,
    wait_for_port,
)
from fencewatch.loader import load_scenario
from storage.db import open_pool
from tests import serve
from tests.kit import (
    LIANDU,
    LIANDU_SEAT,
    border_crossing,
    line,
    lishui_collection,
    offset,
    qingtian_point,
)

BOUND_S = 120.0  # upper bound for "eventually"

needs_private_stack = pytest.mark.skipif(
    shutil.which("runuser") is None and shutil.which("initdb") is None,
    reason="needs PostgreSQL's initdb to run a private cluster",
)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else name


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (the system binaries, run as user postgres
    when we are root), so the test can restart it without touching anyone else's."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fw-pg-"))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            [
                *self._as,
                _pg_bin("initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-N",
            ],
            check=True,
            capture_output=True,
        )

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *self._as,
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "-l",
                str(self.dir / "log"),
                *args,
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg = PrivatePostgres()
        self.pg.start()
        self.redis, self.redis_port = start_redis(root / "redis")
        self.broker, self.mqtt_port = start_mosquitto(root / "mqtt", access=ANONYMOUS_FOR_TESTS)
        self.http_port = free_port()
        self.client_id = "fencewatch-faults"
        # `fencewatch serve` processes by worker number; worker 0 answers on http_port.
        self.services: dict[int, subprocess.Popen[bytes]] = {}
        self.ports = {0: self.http_port}
        self.osmand_ports: dict[int, int] = {}  # where each worker takes OsmAnd requests

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start_service(
        self, worker: int = 0, shards: int = 1, roles: str = "", extra: dict[str, str] | None = None
    ) -> None:
        port = self.ports.setdefault(worker, free_port())
        osmand_port = self.osmand_ports.setdefault(worker, free_port())
        env = {
            "FENCEWATCH_DATABASE_URL": self.pg.url,
            "FENCEWATCH_REDIS_URL": self.redis_url,
            "FENCEWATCH_MQTT_URL": self.mqtt_url,
            "FENCEWATCH_OSMAND": f"127.0.0.1:{osmand_port}",
            "FENCEWATCH_JT808": "off",
            "FENCEWATCH_MQTT_CLIENT_ID": self.client_id,
            "FENCEWATCH_DATA_DIR": str(self.root / "var"),
            "FENCEWATCH_SHARDS": str(shards),
            "FENCEWATCH_WORKER_ID": f"worker-{worker}",
            "FENCEWATCH_ROLES": roles or "ingest,api,scheduler",
            **(extra or {}),
        }
        self.services[worker] = serve.start(env, port, self.root / f"service-{worker}.log")

    def kill_service(self, worker: int = 0) -> None:
        service = self.services.pop(worker)
        service.send_signal(signal.SIGKILL)
        service.wait()

    def stop_service(self) -> None:
        serve.stop(list(self.services.values()))
        self.services.clear()

    def metric(self, worker: int, name: str) -> float:
        """A Prometheus sample of one worker (labelled series summed)."""
        return serve.metric(self.ports[worker], name)

    def restart_broker(self) -> None:
        self.broker.terminate()  # a clean stop: mosquitto saves queued messages
        self.broker.wait(timeout=30)
        self.broker, _ = start_mosquitto(self.root / "mqtt", self.mqtt_port, ANONYMOUS_FOR_TESTS)

    def restart_redis(self, down_s: float = 0.0) -> None:
        self.redis.kill()
        self.redis.wait(timeout=30)
        time.sleep(down_s)
        self.redis, _ = start_redis(self.root / "redis", self.redis_port)
        wait_for_port(self.redis_port)

    def close(self) -> None:
        self.stop_service()
        for proc in (self.broker, self.redis):
            proc.terminate()
            proc.wait(timeout=30)
        self.pg.stop()

    async def count(self, sql: str) -> int:
        conn = await asyncpg.connect(self.pg.url)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()


class Fleet:
    """Devices that live in 莲都区; some drive into 青田 (one breach each). All fixes are
    recent (ingest refuses stale ones) and go out with QoS 1 as fast as the broker takes them."""

    def __init__(self, devices: int, fixes_each: int, crossing: int) -> None:
        self.devices = [f"F{n:03d}" for n in range(devices)]
        self.crossing = set(self.devices[:crossing])
        now = int(time.time() * 1000)
        t0 = now - fixes_each * 5_000
        target = qingtian_point()
        border = border_crossing(LIANDU_SEAT, target, LIANDU)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        for n, device in enumerate(self.devices):
            home = offset(LIANDU_SEAT, 300 * (n % 10), 300 * (n // 10))
            if device in self.crossing:
                half = fixes_each // 2
                path = line(home, border, half, t0=t0, interval_s=5)
                path += line(border, target, 80, t0=t0 + half * 5_000, interval_s=5, seq0=half + 1)[
                    : fixes_each - half
                ]
            else:
                path = line(home, home, fixes_each, t0=t0, interval_s=5)
            self.messages += [(f"em/{device}/loc", {"v": 1, **f}) for f in path]
        # Arrival order interleaves devices, as a real fleet's would.
        self.messages.sort(key=lambda m: (m[1]["ts"], m[0]))

    def roster(self) -> dict[str, Any]:
        return {
            "timezone": "Asia/Shanghai",
            "supervisees": [
                {"id": f"P{d}", "jurisdiction": [LIANDU], "devices": [d]} for d in self.devices
            ],
        }

    async def load(self, stack: Stack) -> None:
        scenario = stack.root / "scenario"
        scenario.mkdir(exist_ok=True)
        (scenario / "zones.geojson").write_text(json.dumps(lishui_collection()))
        (scenario / "roster.json").write_text(json.dumps(self.roster()))
        pool = await open_pool(stack.pg.url, min_size=1, max_size=2)
        try:
            await load_scenario(pool, scenario)
        finally:
            await pool.close()

    def publish(
        self, stack: Stack, messages: list[tuple[str, dict[str, Any]]] | None = None
    ) -> threading.Thread:
        """Publish in a thread; every message is acknowledged by the broker before it ends."""

        def run() -> None:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-publisher")
            client.max_inflight_messages_set(500)
            client.connect("127.0.0.1", stack.mqtt_port)
            client.loop_start()
            infos = [
                client.publish(topic, json.dumps(payload), qos=1)
                for topic, payload in (self.messages if messages is None else messages)
            ]
            for info in infos:
                info.wait_for_publish(BOUND_S)
            client.loop_stop()
            client.disconnect()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


async def until(probe: Any, what: str) -> None:
    try:
        async with asyncio.timeout(BOUND_S):
            # The state lives in another process's database: polling is the only way.
            while not await probe():  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(what) from None
