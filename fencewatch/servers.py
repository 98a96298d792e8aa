"""The database, cache and broker `fencewatch` talks to: configured, or embedded (spec 4.3).

A server whose URL is not configured is started here under `settings.data_dir` and keeps
its data there across runs. It is shared by every fencewatch process using the same data
directory (say `fencewatch load` while `fencewatch serve` runs) and stopped when the last
one leaves. A process that died without leaving does not count: the next one adopts what
it left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import msgspec
import psutil

from fencewatch import embedded, embedded_mqtt
from fencewatch.config import Settings, redact
from ingest import credentials
from storage.db import open_pool

log = logging.getLogger(__name__)

NAMES = ("postgres", "redis", "mqtt")
T = TypeVar("T")


class ServerUrls(msgspec.Struct, frozen=True):
    """Where each server is; "" for one that was neither configured nor needed."""

    database_url: str
    redis_url: str
    mqtt_url: str
    embedded: tuple[str, ...]  # names of the ones started (or joined) here


@contextlib.contextmanager
def servers(
    settings: Settings, need: Iterable[str] = ("postgres", "redis", "mqtt")
) -> Iterator[ServerUrls]:
    """Yield the URLs of the needed servers, starting an embedded one for each unset URL."""
    needed = set(need)
    if unknown := needed - set(NAMES):
        raise ValueError(f"unknown servers {sorted(unknown)}; known: {', '.join(NAMES)}")
    configured = {
        "postgres": settings.database_url,
        "redis": settings.redis_url,
        "mqtt": settings.mqtt_url,
    }
    urls = {name: url or "" for name, url in configured.items()}
    with contextlib.ExitStack() as stack:
        started = []
        for name in NAMES:
            if name in needed and not urls[name]:
                datadir = settings.data_dir / name
                start = _EMBEDDED[name]
                if name == "mqtt":
                    start = functools.partial(_mqtt, shards=settings.shards)
                urls[name] = stack.enter_context(start(datadir))
                started.append(name)
                log.warning(
                    "%s is not set: using an embedded %s at %s (data in %s)",
                    _ENV[name],
                    _LABEL[name],
                    redact(urls[name]),
                    datadir,
                )
        yield ServerUrls(urls["postgres"], urls["redis"], urls["mqtt"], tuple(started))


def run_with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """For the command-line tools: run `work` on the configured database, or the embedded
    one when none is set."""
    with servers(Settings.from_env(), need=("postgres",)) as urls:
        return asyncio.run(_with_pool(urls.database_url, work))


async def _with_pool(dsn: str, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    pool = await open_pool(dsn, min_size=1, max_size=2)
    try:
        return await work(pool)
    finally:
        await pool.close()


@contextlib.contextmanager
def _postgres(datadir: Path) -> Iterator[str]:
    server, url = embedded.start_postgres(datadir)
    try:
        yield url
    finally:
        server.cleanup()


@contextlib.contextmanager
def _redis(datadir: Path) -> Iterator[str]:
    password = embedded.stored_secret(datadir / embedded.REDIS_SECRET)
    with _shared(datadir, functools.partial(embedded.start_redis, password=password)) as port:
        yield embedded.redis_url(datadir, port)


@contextlib.contextmanager
def _mqtt(datadir: Path, shards: int = 1) -> Iterator[str]:
    """Mosquitto with provisioned accounts (fencewatch.embedded_mqtt), or amqtt."""
    if embedded.mosquitto_binary() is None:
        log.warning(AMQTT_WARNING)
        with _shared(datadir, embedded.start_amqtt) as port:
            yield f"mqtt://127.0.0.1:{port}"
        return
    if embedded_mqtt.ensure(datadir, shards):
        reload_mqtt(datadir)  # one already running here, started by another process
    access = credentials.mosquitto_auth_config(*embedded_mqtt.files(datadir))
    with _shared(datadir, functools.partial(embedded.start_mosquitto, access=access)) as port:
        yield embedded_mqtt.service_url(datadir, port)


AMQTT_WARNING = (
    "Mosquitto is not installed: the embedded MQTT broker is amqtt, which accepts any client"
    " without a password (it cannot check Mosquitto's password hashes, apply per-device"
    " ACLs or name a client after its user). It listens on 127.0.0.1 only, but every local"
    " user can read all positions and publish fixes as any device: fine for a demo on your"
    " own machine, never for monitoring people. Install Mosquitto."
)


def reload_mqtt(datadir: Path) -> bool:
    """Have the embedded broker of `datadir`, if one runs, read its password file and ACL
    again (Mosquitto does on SIGHUP); whether there was one."""
    running = _read(datadir / _RECORD)
    proc = _process(running) if running is not None else None
    if proc is None:
        return False
    proc.send_signal(signal.SIGHUP)
    return True


_EMBEDDED = {"postgres": _postgres, "redis": _redis, "mqtt": _mqtt}
_ENV = {
    "postgres": "FENCEWATCH_DATABASE_URL",
    "redis": "FENCEWATCH_REDIS_URL",
    "mqtt": "FENCEWATCH_MQTT_URL",
}
_LABEL = {"postgres": "PostgreSQL", "redis": "Redis", "mqtt": "MQTT broker"}


class _Running(msgspec.Struct):
    """What `_shared` records in the data directory about the server running there."""

    pid: int
    started: float  # the process's create time: tells it from a later one reusing the pid
    port: int
    users: list[int]  # pids of the fencewatch processes using it


_Starter = Callable[[Path, int | None], tuple[subprocess.Popen, int]]
_RECORD = "fencewatch-server.json"


@contextlib.contextmanager
def _shared(datadir: Path, start: _Starter) -> Iterator[int]:
    """Run, join or adopt the server of `datadir`; yield its port."""
    datadir.mkdir(parents=True, exist_ok=True)
    record = datadir / _RECORD
    child = None  # held so that Popen sees the exit status once _leave has reaped it
    with _locked(datadir):
        running = _read(record)
        if running is None or _process(running) is None:
            # Same port as last time when it is free, so clients can keep their settings.
            port = embedded.free_port(running.port if running else None)
            child, port = start(datadir, port)
            running = _Running(child.pid, psutil.Process(child.pid).create_time(), port, [])
        else:
            embedded.wait_for_port(running.port)
        running.users = [pid for pid in running.users if psutil.pid_exists(pid)]
        running.users.append(os.getpid())
        _write(record, running)
    try:
        yield running.port
    finally:
        with _locked(datadir):
            _leave(record)
        if child is not None:
            child.poll()


def _leave(record: Path) -> None:
    running = _read(record)
    if running is None:
        return
    running.users = [p for p in running.users if p != os.getpid() and psutil.pid_exists(p)]
    if not running.users and (proc := _process(running)) is not None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Kept after the stop: the next start reuses the port it names.
    _write(record, running)


def _process(running: _Running) -> psutil.Process | None:
    """The recorded server process, if it is still the one running."""
    try:
        proc = psutil.Process(running.pid)
        if proc.create_time() == running.started and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except psutil.Error:
        pass
    return None


def _read(record: Path) -> _Running | None:
    try:
        return msgspec.json.decode(record.read_bytes(), type=_Running)
    except (FileNotFoundError, msgspec.DecodeError):
        return None  # never started, or damaged: start afresh


def _write(record: Path, running: _Running) -> None:
    # Replaced whole, so a crash mid-write cannot leave a record naming no server.
    partial = record.with_suffix(".partial")
    partial.write_bytes(msgspec.json.encode(running))
    partial.replace(record)


@contextlib.contextmanager
def _locked(datadir: Path) -> Iterator[None]:
    with open(datadir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
