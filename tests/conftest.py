"""Real services for the tests: a fresh PostgreSQL database, a Redis database and a private
Mosquitto broker running fencewatch's own config — open to anonymous clients, unlike the
shipped one, for the many tests about something else than broker accounts
(tests/test_provision.py runs the provisioned one). Nothing here is mocked."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from fencewatch.embedded import ANONYMOUS_FOR_TESTS, start_mosquitto
from tests.faults import Stack

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
PG_ADMIN = os.environ.get("FENCEWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("FENCEWATCH_TEST_REDIS", "redis://127.0.0.1:6379")


def _dsn_for(database: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + database


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    name = f"fw_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _dsn_for(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def redis_url() -> str:
    """A Redis database number of this test process's own, flushed before use."""
    import redis

    url = f"{REDIS_BASE}/{1 + os.getpid() % 15}"
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
