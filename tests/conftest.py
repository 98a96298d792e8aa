"""Real services for the tests: a fresh PostgreSQL database, a Redis database and a private
Mosquitto broker running fencewatch's own config — open to anonymous clients, unlike the
shipped one, for the many tests about something else than broker accounts
(tests/test_provision.py runs the provisioned one). Nothing here is mocked."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from fencewatch.embedded import ANONYMOUS_FOR_TESTS, start_mosquitto
from storage.migrate import migrate
from tests.faults import Stack

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
PG_ADMIN = os.environ.get("FENCEWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("FENCEWATCH_TEST_REDIS", "redis://127.0.0.1:6379")


def _dsn_for(database: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + database


@asynccontextmanager
async def _database(template: str = "template1") -> AsyncIterator[str]:
    """A new database copied from `template`, dropped when done; its name."""
    name = f"fw_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield name
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pg_template() -> AsyncIterator[str]:
    """A database migrated once for this test process, that each test's database copies:
    a copy costs half of migrating a new one, a thousand times over."""
    async with _database() as name:
        conn = await asyncpg.connect(_dsn_for(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()  # a template must have no session to be copied
        yield name


@pytest.fixture
async def pg_dsn(pg_template: str) -> AsyncIterator[str]:
    """A new database for one test, its schema migrated (as `open_pool` leaves it); dropped
    afterwards."""
    async with _database(pg_template) as name:
        yield _dsn_for(name)


@pytest.fixture
async def pg_empty_dsn() -> AsyncIterator[str]:
    """A new, empty database for one test (no schema yet); dropped afterwards."""
    async with _database() as name:
        yield _dsn_for(name)


@pytest.fixture
def redis_url() -> str:
    """A Redis database of this test process's own, flushed before use. Under pytest-xdist
    each worker takes the next number after the controller's, so two never share one."""
    import redis

    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if worker is None:
        number = os.getpid() % 15
    else:
        number = (os.getppid() + int(worker.removeprefix("gw"))) % 15
    url = f"{REDIS_BASE}/{1 + number}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A private Mosquitto with fencewatch's config (so tests see the shipped queue limits)."""
    proc, port = start_mosquitto(tmp_path_factory.mktemp("mosquitto"), access=ANONYMOUS_FOR_TESTS)
    try:
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def mqtt_url(mqtt_broker: tuple[str, int]) -> str:
    host, port = mqtt_broker
    return f"mqtt://{host}:{port}"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A private PostgreSQL, Redis and Mosquitto, with `fencewatch serve` processes to kill
    (tests/faults.py)."""
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


# The console tests' screenshots are always taken; they are kept (for the README) only when
# this names a directory, so a test run leaves the work tree alone:
#   FENCEWATCH_SCREENSHOTS=docs/screenshots python -m pytest tests/test_console*.py
SCREENSHOTS_ENV = "FENCEWATCH_SCREENSHOTS"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
