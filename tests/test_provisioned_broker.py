"""The secure broker setup of docs/security.md, end to end, as a user runs it: Mosquitto with
fencewatch's config plus the four lines the doc gives (no anonymous clients, each client
named after its user, the password file and ACL), provisioned by `fencewatch devices
provision`, two `fencewatch serve` workers sharing two shards, and devices publishing with
their own passwords. Every fix the broker acknowledged must be stored, once.

Before each of the service's connections had a login of its own, all of them logged in as
the one service account, so the broker gave them one client id: the shard sessions, the
broker watch and the command sender threw each other off, and a clean-session one deleted
an ingest session with its queue (issue 13: 300 fixes acknowledged, 98 stored, /healthz ok).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest

from fencewatch.embedded import free_port, mosquitto_binary, mosquitto_config, wait_for_port
from ingest import credentials as provision
from tests import serve
from tests.faults import Fleet, until
from tests.kit import LIANDU, lishui_collection
from tests.live import eventually, load_roster, running

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="no mosquitto binary")

ACCOUNT = "fw-svc"
PASSWORD = "service-secret-for-tests"
DEVICES, FIXES_EACH = 8, 150  # 1,200 fixes


@contextlib.contextmanager
def documented_mosquitto(datadir: Path, port: int) -> Iterator[None]:
    """Mosquitto as docs/security.md has a user run it: fencewatch's mosquitto.conf and the
    lines the doc lists (`provision.mosquitto_auth_config` writes them), on files that
    `fencewatch devices provision` wrote into `datadir`."""
    binary = mosquitto_binary()
    assert binary is not None
    access = provision.mosquitto_auth_config(datadir / "passwd", datadir / "acl")
    conf = mosquitto_config(datadir, port, access)
    with open(datadir / "mosquitto.out", "ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_for_port(port, proc=proc)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def provision_command(datadir: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    """`fencewatch devices provision` as the doc gives it; the new passwords it wrote."""
    creds = datadir / f"new-{uuid.uuid4().hex[:6]}.csv"
    command = [sys.executable, "-m", "fencewatch.cli", "devices", "provision"]
    command += ["--password-file", str(datadir / "passwd"), "--acl-file", str(datadir / "acl")]
    command += ["--service-user", ACCOUNT, "--out", str(creds), *args]
    subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True)
    with creds.open() as f:
        return {row["user"]: row["password"] for row in csv.DictReader(f)}


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_the_documented_setup_stores_every_acknowledged_fix(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    fleet = Fleet(DEVICES, FIXES_EACH, crossing=0)
    await load_roster(pg_dsn, tmp_path, fleet.roster())
    port = free_port()
    env = {
        "FENCEWATCH_DATABASE_URL": pg_dsn,
        "FENCEWATCH_REDIS_URL": redis_url,
        "FENCEWATCH_MQTT_URL": f"mqtt://{ACCOUNT}:{PASSWORD}@127.0.0.1:{port}",
        "FENCEWATCH_MQTT_CLIENT_ID": f"fw-{uuid.uuid4().hex[:8]}",
        "FENCEWATCH_SHARDS": "2",
        "FENCEWATCH_DATA_DIR": str(tmp_path / "var"),
        # The API process's OsmAnd listener and its publisher's login too (worker 0).
        "FENCEWATCH_OSMAND": f"127.0.0.1:{free_port()}",
        # And the JT/T 808 gateway's (its login may publish only for its terminals).
        "FENCEWATCH_JT808": f"127.0.0.1:{free_port()}",
    }
    broker = tmp_path / "broker"
    broker.mkdir()
    # Devices from the database; the service account's password is the URL's.
    passwords = await asyncio.to_thread(provision_command, broker, env)
    assert sorted(passwords) == sorted(fleet.devices)
    http = [free_port(), free_port()]
    services: list[subprocess.Popen[bytes]] = []
    devices = None
    with documented_mosquitto(broker, port):
        try:
            for worker, roles in enumerate(("ingest,api,scheduler", "ingest")):
                mine = {**env, "FENCEWATCH_WORKER_ID": f"w{worker}", "FENCEWATCH_ROLES": roles}
                log = tmp_path / f"w{worker}.log"
                services.append(await asyncio.to_thread(serve.start, mine, http[worker], log))

            async def one_shard_each() -> bool:
                return all(serve.metric(p, "fencewatch_shards_held") == 1 for p in http)

            await until(one_shard_each, "the two workers did not share the two shards")
            devices = await asyncio.to_thread(
                serve.Devices,
                lambda d: f"mqtt://{d}:{passwords[d]}@127.0.0.1:{port}",
                fleet.devices,
            )
            await asyncio.to_thread(devices.publish, fleet.messages)
            await asyncio.to_thread(devices.wait_acked, len(fleet.messages))
            assert len(devices.acked) == len(fleet.messages) == DEVICES * FIXES_EACH

            async def all_stored() -> bool:
                return await count(pg_dsn, "SELECT count(*) FROM fixes") >= len(devices.acked)

            await until(all_stored, "acknowledged fixes were not stored")
            assert await count(pg_dsn, "SELECT count(*) FROM fixes") == len(fleet.messages)
            assert await count(pg_dsn, "SELECT count(DISTINCT (device_id, seq)) FROM fixes") == len(
                fleet.messages
            )
            async with httpx.AsyncClient() as client:
                for p in http:
                    assert (await client.get(f"http://127.0.0.1:{p}/healthz")).status_code == 200
            for p in http:
                assert serve.metric(p, "fencewatch_broker_sessions_lost") == 0
        finally:
            if devices is not None:
                devices.close()
            serve.stop(services)


async def test_health_says_so_while_the_ingest_session_is_thrown_off(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """Another client logging in with the ingest session's login takes the session each
    time it connects (Mosquitto names both after the user): /healthz must not say ok."""
    port = free_port()
    broker = tmp_path / "broker"
    done = provision.provision(
        [provision.DeviceEntry("A")],
        broker / "passwd",
        broker / "acl",
        service_users=[ACCOUNT],
        service_password=PASSWORD,
    )
    ingest_login = f"{ACCOUNT}@0of1"  # the single shard's session
    assert set(done.logins) >= {ingest_login, f"{ACCOUNT}@cmd"}
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [{"id": "S1", "jurisdiction": [LIANDU], "devices": ["A"]}],
    }
    url = f"mqtt://{ACCOUNT}:{PASSWORD}@127.0.0.1:{port}"
    with documented_mosquitto(broker, port):
        async with running(pg_dsn, redis_url, url, lishui_collection(), roster) as live:
            health = f"http://127.0.0.1:{live.service.settings.http_port}/healthz"
            assert (await live.http.get(health)).status_code == 200
            # A second connection under the same login, reconnecting whenever thrown off.
            rogue = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id="rogue", clean_session=False
            )
            rogue.username_pw_set(ingest_login, PASSWORD)
            rogue.reconnect_delay_set(1, 1)
            rogue.connect_async("127.0.0.1", port)
            rogue.loop_start()
            try:

                async def unhealthy() -> dict[str, Any] | None:
                    r = await live.http.get(health)
                    return r.json() if r.status_code == 503 else None

                body = await eventually(unhealthy, "/healthz said ok while the session flapped")
                assert "broker" in body["failed"]
            finally:
                rogue.disconnect()
                rogue.loop_stop()
