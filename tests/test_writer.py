"""Committing a judged batch (ingest.writer) on the real PostgreSQL: a batch that meets
fixes already stored (a QoS 1 redelivery) is committed again, each fix once, and nothing
else it carries is lost or doubled."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from geofence.judge import Judged
from geofence.model import Fix
from geofence.policy import Policy
from ingest.decode import Rejection
from ingest.writer import commit
from tests.test_api import World, open_world


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    async with open_world(pg_dsn, redis_url) as opened:
        yield opened


T0 = int(time.time() * 1000) - 60_000


def judged(seq: int) -> Judged:
    ms = T0 + seq * 1000
    return Judged(Fix("T-P1", seq, ms, ms, 28.4517, 119.9127, acc=8.0), "P1", Policy(), 0, 16.0)


async def test_a_redelivered_batch_stores_each_fix_once_and_keeps_the_rest(world: World) -> None:
    async with world.pool.acquire() as conn:
        first = await commit(conn, [judged(1), judged(2)], [], {}, [], [])
        bad = Rejection("em/T-P1/loc", b"{not json", "malformed", "not valid JSON")
        again = await commit(conn, [judged(2), judged(3)], [], {}, [bad], [])
    assert first.stored == 2 and again.stored == 1
    assert again.last_rid > first.last_rid
    rows = await world.pool.fetch("SELECT seq FROM fixes WHERE device_id = 'T-P1' ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert await world.pool.fetchval("SELECT count(*) FROM rejected_messages") == 1
