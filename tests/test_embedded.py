"""Embedded servers (spec 4.3): each one really works, keeps its data, survives a crashed
run, and nothing is started for a configured URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
import paho.mqtt.client as mqtt
import pytest
import redis
import redis.asyncio as aioredis
from paho.mqtt.enums import CallbackAPIVersion

from fencewatch import embedded as embedded_servers
from fencewatch import embedded_mqtt
from fencewatch.config import MqttAddress, Settings
from fencewatch.embedded import start_amqtt
from fencewatch.servers import ServerUrls, servers
from ingest.credentials import DeviceEntry

BOUND = 20.0  # seconds to give up after, so a broken server fails the test instead of hanging


@contextlib.contextmanager
def _shared_dir() -> Iterator[Path]:
    """A directory the embedded PostgreSQL's own system user can reach: pytest keeps its
    base temp directory private to root (and makes it so again at every session start)."""
    path = Path(tempfile.mkdtemp(prefix="fw-embedded-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_home() -> Iterator[Path]:
    with _shared_dir() as home:
        yield home


@pytest.fixture(scope="module")
def embedded_home() -> Iterator[Path]:
    """The data directory of the servers of `embedded`."""
    with _shared_dir() as home:
        yield home / "embedded"


@pytest.fixture(scope="module")
def embedded(embedded_home: Path) -> Iterator[ServerUrls]:
    """One embedded PostgreSQL, Redis and broker shared by the tests of this module."""
    with servers(Settings(data_dir=embedded_home)) as urls:
        yield urls


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return True
    except OSError:
        return False


class _Mqtt:
    """A connected paho client that collects what it receives."""

    def __init__(self, url: str, client_id: str, *, clean_session: bool = True) -> None:
        address = MqttAddress.parse(url)
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._acked = threading.Event()
        connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if address.username:
            self.client.username_pw_set(address.username, address.password)
        self.refused = False

        def on_connect(
            client: mqtt.Client, userdata: object, flags: object, rc: Any, _: object
        ) -> None:
            self.refused = rc.is_failure
            connected.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_: self._acked.set()
        self.client.on_message = lambda _client, _userdata, message: self.received.put(message)
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert connected.wait(BOUND), "no CONNACK"

    def subscribe(self, topic: str) -> None:
        self._acked.clear()
        self.client.subscribe(topic, qos=1)
        assert self._acked.wait(BOUND), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(BOUND)  # PUBACK came

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


PING = msgspec.json.encode({"v": 1, "seq": 1, "ts": 1764240000123, "lat": 28.4, "lon": 119.9})


def _mqtt_round_trip(url: str, device_url: str | None = None, device: str = "") -> None:
    """Publish with QoS 1 (as `device` from `device_url`, when the broker wants one) and
    check a QoS 1 subscriber receives exactly that message."""
    topic = f"em/{device or 'T-' + uuid.uuid4().hex[:8]}/loc"
    subscriber = _Mqtt(url, f"sub-{topic}")
    publisher = _Mqtt(device_url or url, device or f"pub-{topic}")
    assert not (subscriber.refused or publisher.refused)
    try:
        subscriber.subscribe(topic)
        publisher.publish(topic, PING)
        message = subscriber.received.get(timeout=BOUND)
        assert (message.topic, message.payload, message.qos) == (topic, PING, 1)
    finally:
        publisher.close()
        subscriber.close()


async def test_embedded_postgres_answers_sql(embedded: ServerUrls) -> None:
    conn = await asyncpg.connect(embedded.database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "fencewatch"
        await conn.execute("CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (41)")
        assert await conn.fetchval("SELECT x + 1 FROM t") == 42
    finally:
        await conn.close()


async def test_embedded_redis_sets_and_gets(embedded: ServerUrls) -> None:
    client = aioredis.from_url(embedded.redis_url)
    try:
        await client.set("fencewatch:test", "丽水")
        assert await client.get("fencewatch:test") == "丽水".encode()
    finally:
        await client.aclose()


async def test_embedded_redis_wants_its_password(embedded: ServerUrls) -> None:
    """Issue 13: without one, any local user could push fake positions to every console."""
    url = urlsplit(embedded.redis_url)
    assert url.hostname == "127.0.0.1" and url.password
    anyone = aioredis.from_url(f"redis://127.0.0.1:{url.port}/0")
    try:
        with pytest.raises(redis.AuthenticationError):
            await anyone.publish("fencewatch:feed", b"{}")
    finally:
        await anyone.aclose()


def _ingest(url: str) -> str:
    """The URL a single shard's ingest session logs in with (MqttAddress.login)."""
    address = MqttAddress.parse(url)
    return address.url(address.login("0of1"), address.password)


def _device(url: str, device: str, password: str) -> str:
    return MqttAddress.parse(url).url(device, password)


def _logs_in(url: str) -> bool:
    client = _Mqtt(url, f"probe-{uuid.uuid4().hex[:8]}")
    client.close()
    return not client.refused


def test_embedded_broker_takes_provisioned_clients_only(
    embedded: ServerUrls, embedded_home: Path
) -> None:
    """Locked as docs/security.md says: the service and each device with its own password;
    no one anonymous; a device added by `fencewatch devices provision` (no files: the
    embedded broker's) may log in once the command has reloaded the broker."""
    assert embedded.embedded == ("postgres", "redis", "mqtt")
    assert MqttAddress.parse(embedded.mqtt_url).password  # the service's, from its data dir
    assert not _logs_in(MqttAddress.parse(embedded.mqtt_url).url())  # anonymous
    roster = embedded_home / "roster.json"
    roster.write_text(
        json.dumps({"supervisees": [{"id": "S1", "jurisdiction": [], "devices": ["T7"]}]})
    )
    env = {**os.environ, "FENCEWATCH_DATA_DIR": str(embedded_home)}
    env.pop("FENCEWATCH_MQTT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "fencewatch.cli", "devices", "provision", "--roster", str(roster)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "reloaded" in done.stderr
    password = dict(line.split("\t") for line in done.stdout.splitlines())["T7"]
    device_url = _device(embedded.mqtt_url, "T7", password)
    _until(lambda: _logs_in(device_url), "the reloaded broker refused the new device")
    assert not _logs_in(_device(embedded.mqtt_url, "T7", "not its password"))
    _mqtt_round_trip(_ingest(embedded.mqtt_url), device_url, "T7")


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_embedded_broker_keeps_queued_messages_across_restarts(tmp_path: Path) -> None:
    """What waits for an offline persistent session survives a broker restart."""
    settings = Settings(data_dir=tmp_path)
    passwords = embedded_mqtt.provision_fleet(tmp_path / "mqtt", [DeviceEntry("T1")], shards=1)
    with servers(settings, need=("mqtt",)) as urls:
        ingest = _Mqtt(_ingest(urls.mqtt_url), "ingest", clean_session=False)
        ingest.subscribe("em/+/loc")
        ingest.close()
        device = _Mqtt(_device(urls.mqtt_url, "T1", passwords["T1"]), "T1")
        device.publish("em/T1/loc", PING)
        device.close()
    with servers(settings, need=("mqtt",)) as restarted:
        ingest = _Mqtt(_ingest(restarted.mqtt_url), "ingest", clean_session=False)
        try:
            message = ingest.received.get(timeout=BOUND)
        finally:
            ingest.close()
    assert (message.topic, message.payload, message.qos) == ("em/T1/loc", PING, 1)


def test_without_mosquitto_amqtt_says_it_is_open_and_listens_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedded_servers, "mosquitto_binary", lambda: None)
    with servers(Settings(data_dir=tmp_path), need=("mqtt",)) as urls:
        address = MqttAddress.parse(urls.mqtt_url)
        assert address.host == "127.0.0.1" and address.username is None
        _mqtt_round_trip(urls.mqtt_url)
    assert any("without a password" in r.getMessage() for r in caplog.records)


def test_amqtt_fallback_round_trips_qos1(tmp_path: Path) -> None:
    proc, port = start_amqtt(tmp_path)
    try:
        _mqtt_round_trip(f"mqtt://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=BOUND)


def test_configured_urls_start_nothing(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/postgres",
        redis_url="redis://127.0.0.1:6379/0",
        mqtt_url="mqtt://127.0.0.1:1883",
        data_dir=tmp_path / "var",
    )
    with servers(settings) as urls:
        assert urls == ServerUrls(
            settings.database_url or "", settings.redis_url or "", settings.mqtt_url or "", ()
        )
    with servers(Settings(data_dir=tmp_path / "var"), need=()) as urls:
        assert urls == ServerUrls("", "", "", ())
    assert not (tmp_path / "var").exists()


def test_unknown_server_name_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="unknown servers \\['kafka'\\]"),
        servers(Settings(data_dir=tmp_path), need=("redis", "kafka")),
    ):
        pass


CRASHING_RUN = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    import asyncpg, msgspec, redis
    from fencewatch.config import Settings
    from fencewatch.servers import servers

    async def write(url):
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE marker (note text); INSERT INTO marker VALUES ('kept')")
        await conn.close()

    with servers(Settings(data_dir=Path(sys.argv[1]))) as urls:
        asyncio.run(write(urls.database_url))
        redis.Redis.from_url(urls.redis_url).set("marker", "kept")
        print(msgspec.json.encode(urls).decode(), flush=True)
        time.sleep(3600)
    """
)


def _marker(database_url: str) -> str:
    async def fetch() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SELECT note FROM marker"))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_crashed_run_is_adopted_and_data_is_kept(pg_home: Path) -> None:
    data = pg_home / "var"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        first = msgspec.json.decode(child.stdout.readline(), type=ServerUrls)
    finally:
        child.send_signal(signal.SIGKILL)  # no cleanup: its servers are left running
        child.wait()
    assert _listening(first.redis_url) and _listening(first.mqtt_url)

    with servers(Settings(data_dir=data)) as adopted:
        assert adopted == first  # the same servers, taken over
        assert _marker(adopted.database_url) == "kept"
    assert not _listening(first.redis_url) and not _listening(first.mqtt_url)
    assert not (data / "postgres" / "postmaster.pid").exists()

    # Stale leftovers: a postmaster.pid naming a live process that is no postmaster, and a
    # damaged server record. Both are ignored, and the data is still there.
    (data / "postgres" / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n")
    (data / "redis" / "fencewatch-server.json").write_text('{"pid": ')
    with servers(Settings(data_dir=data), need=("postgres", "redis")) as again:
        assert _marker(again.database_url) == "kept"
        assert redis.Redis.from_url(again.redis_url).get("marker") == b"kept"
