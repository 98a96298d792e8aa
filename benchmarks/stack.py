"""The servers of one run, all on this machine: a private Mosquitto with fencewatch's
shipped config, a fresh PostgreSQL database on the local server (dropped afterwards unless
kept), Redis, and `fencewatch serve` itself as separate processes.

Redis: by default a private `redis-server` (fencewatch.embedded), because the live feed
and rules channels are Redis pub/sub, which ignores database numbers — on a shared Redis
the benchmark's feed would reach everyone else's listeners and theirs ours. `--redis-url`
uses an existing server instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from api.tokens import create_token
from benchmarks import fleet as fleets
from benchmarks.procs import ROOT
from fencewatch import embedded
from fencewatch.loader import load_scenario
from storage.db import open_pool

READY_S = 600.0  # restoring a large roster takes a while on two cores
STOP_S = 60.0
METRICS_TRIES = 3
METRICS_RETRY_S = 0.2  # then 0.4: a sample is taken every second


@dataclass
class Stack:
    run_dir: Path
    mqtt_port: int
    mosquitto_pid: int
    redis_url: str
    redis_pid: int | None
    database_url: str
    database: str
    token: str = ""
    load_s: float = 0.0
    roster_cached: bool = False

    @property
    def mqtt(self) -> str:
        return f"127.0.0.1:{self.mqtt_port}"

    def broker_dropped(self) -> int:
        """How often Mosquitto said it dropped messages for a client (queue limit hit)."""
        log = self.run_dir / "mosquitto" / "mosquitto.log"
        try:
            return log.read_text(errors="replace").count("being dropped")
        except OSError:
            return 0


@contextlib.asynccontextmanager
async def running(
    run_dir: Path,
    pg_admin: str,
    redis_url: str | None,
    fleet: fleets.Fleet,
    keep: bool,
    cache_roster: bool,
) -> AsyncIterator[Stack]:
    with contextlib.ExitStack() as procs:
        broker, port = embedded.start_mosquitto(
            run_dir / "mosquitto", access=embedded.ANONYMOUS_FOR_TESTS
        )
        procs.callback(_stop, broker)
        redis_pid = None
        if redis_url is None:
            redis, redis_port = embedded.start_redis(run_dir / "redis")
            procs.callback(_stop, redis)
            redis_url, redis_pid = f"redis://127.0.0.1:{redis_port}/0", redis.pid
        scenario = fleets.write_scenario(fleet, run_dir / "scenario")
        template = f"fw_bench_roster_{_roster_key(scenario)}" if cache_roster else None
        started = time.perf_counter()
        admin = await asyncpg.connect(pg_admin)
        try:
            async with _database(admin, pg_admin, keep, template) as (name, dsn, loaded):
                stack = Stack(run_dir, port, broker.pid, redis_url, redis_pid, dsn, name)
                pool = await open_pool(dsn, min_size=1, max_size=2)
                try:
                    if not loaded:
                        await load_scenario(pool, scenario)
                finally:
                    await pool.close()
                if template and not loaded:
                    # Copied while nobody is connected to it, before the token is added.
                    await admin.execute(f'CREATE DATABASE "{template}" TEMPLATE "{name}"')
                pool = await open_pool(dsn, min_size=1, max_size=2)
                try:
                    stack.token = await create_token(pool, "operator", subject="benchmark")
                finally:
                    await pool.close()
                stack.load_s = round(time.perf_counter() - started, 1)
                stack.roster_cached = loaded
                yield stack
        finally:
            await admin.close()


def _roster_key(scenario: Path) -> str:
    """What a loaded roster depends on: the scenario, the schema and the loading code."""
    digest = hashlib.sha256()
    sources = [
        scenario / "zones.geojson",
        scenario / "roster.json",
        *sorted((ROOT / "storage" / "migrations").glob("*.sql")),
        ROOT / "fencewatch" / "loader.py",
        *sorted((ROOT / "storage" / "repo").glob("*.py")),
    ]
    for path in sources:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def _database(
    admin: asyncpg.Connection, admin_dsn: str, keep: bool, template: str | None
) -> AsyncIterator[tuple[str, str, bool]]:
    """A new database (name, DSN, whether the roster is in it): a copy of `template` when
    that exists, else empty. Dropped afterwards unless `keep`."""
    name = f"fw_bench_{uuid.uuid4().hex[:12]}"
    loaded = template is not None and bool(
        await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template)
    )
    copy = f' TEMPLATE "{template}"' if loaded else ""
    await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield name, admin_dsn.rsplit("/", 1)[0] + "/" + name, loaded
    finally:
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServiceProcess:
    """One `fencewatch serve`, configured through the environment like any deployment."""

    def __init__(
        self,
        stack: Stack,
        index: int,
        shards: int,
        roles: str,
        settings: dict[str, str] | None = None,
    ) -> None:
        """`settings`: FENCEWATCH_* variables that differ from the benchmark's defaults."""
        self.port = embedded.free_port()
        env = {
            **deployment_env(stack),
            "FENCEWATCH_HTTP": f"127.0.0.1:{self.port}",
            "FENCEWATCH_OSMAND": "off",  # the benchmark's devices speak MQTT
            "FENCEWATCH_JT808": "off",
            "FENCEWATCH_SHARDS": str(shards),  # the same in every process
            "FENCEWATCH_WORKER_ID": f"bench-{index}",
            "FENCEWATCH_ROLES": roles,
            **(settings or {}),
        }
        self.log = stack.run_dir / f"service-{index}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [fencewatch(), "serve"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C reaches us; we stop it cleanly
            )
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {stack.token}"},
            timeout=30,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        """Fail the run, with the end of its log, if the service has died."""
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(
                f"fencewatch serve exited with status {self.proc.returncode}; its log ends:\n"
                + "\n".join(tail)
            )

    async def ready(self, shards: int) -> None:
        """Return once /healthz says ingest, database, Redis and broker are all up and the
        process judges `shards` shards (the workers have shared them out)."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            self.check()
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/healthz")).status_code == 200 and (
                    (await self.metrics()) or {}
                ).get("fencewatch_shards_held", 0) == shards:
                    return
            await asyncio.sleep(0.25)
        raise TimeoutError("fencewatch serve did not become healthy")

    async def metrics(self) -> dict[str, float] | None:
        """fencewatch's Prometheus samples, labelled series summed per name; None when
        /metrics did not answer in METRICS_TRIES tries. A loaded box drops or resets a
        connection now and then (a kept-alive one closed as the request went out on it, a
        read reset): one sample missed must not end a ten-minute run. A dead service does."""
        for attempt in range(METRICS_TRIES):
            self.check()
            try:
                text = (await self.http.get("/metrics")).text
            except httpx.TransportError:
                await asyncio.sleep(METRICS_RETRY_S * (attempt + 1))
                continue
            out: dict[str, float] = {}
            for m in re.finditer(r"^(fencewatch_\w+)(?:\{[^}]*\})? (\S+)$", text, re.M):
                out[m[1]] = out.get(m[1], 0.0) + float(m[2])
            return out
        self.check()
        return None

    async def alerts(self, alert_type: str) -> int:
        """How many alerts of the type the API lists (up to its page size, 1,000)."""
        r = await self.http.get("/api/v1/alerts", params={"type": alert_type, "limit": 1000})
        r.raise_for_status()
        return len(r.json()["items"])

    async def stop(self) -> None:
        """SIGTERM (the service saves its snapshot and leaves the broker session), then wait."""
        await self.http.aclose()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def deployment_env(stack: Stack) -> dict[str, str]:
    """The environment of every fencewatch process of the benchmark's deployment."""
    return {
        **os.environ,
        "FENCEWATCH_DATABASE_URL": stack.database_url,
        "FENCEWATCH_REDIS_URL": stack.redis_url,
        "FENCEWATCH_MQTT_URL": f"mqtt://{stack.mqtt}",
        # One deployment: the same client id base in every process.
        "FENCEWATCH_MQTT_CLIENT_ID": f"fencewatch-bench-{stack.database}",
        "FENCEWATCH_DATA_DIR": str(stack.run_dir / "service"),
        # This checkout's code, even where its editable install predates a package.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def fencewatch() -> str:
    """The `fencewatch` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "fencewatch"
    found = str(beside) if beside.exists() else shutil.which("fencewatch")
    if found is None:
        raise FileNotFoundError("no `fencewatch` command: install the project (pip install -e .)")
    return found
