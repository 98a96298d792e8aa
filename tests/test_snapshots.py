"""Engine snapshots written while judging goes on (storage/snapshots.py, ingest/shard.py):
a snapshot restores exactly the state its shard had when it was captured, however the
state changed while its parts were being written; one killed between its parts leaves
the snapshot before it; and snapshots written before parts had rows still restore."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.feed import Feed
from geofence.engine import Engine
from geofence.state import EngineState
from ingest.loop import Judging
from ingest.restore import restore
from ingest.shards import Shard
from storage import snapshots
from storage.db import open_pool
from tests.kit import LIANDU_SEAT, T0, fix, line, qingtian_point
from tests.test_shards import PEOPLE, rules

ROOT = Path(__file__).resolve().parent.parent
MINUTE = 60_000


def walk(engine: Engine, people: list[str], phase: int) -> None:
    """Phase 0: everyone at home; 1: the given people leave for Qingtian (out of their
    jurisdiction, at a walkable pace); 2: they come back."""
    start, end = [(LIANDU_SEAT, LIANDU_SEAT), (LIANDU_SEAT, qingtian_point())][min(phase, 1)]
    if phase == 2:
        start, end = end, start
    for person in people:
        fixes = line(
            start, end, 8, t0=T0 + phase * 120 * MINUTE, interval_s=600, seq0=1 + 10 * phase
        )
        engine.process([fix(f, f"T{person}") for f in fixes])


def moved_on() -> Engine:
    """Forty people seen at home, the first twenty of them since gone out of bounds."""
    engine = Engine(rules())
    walk(engine, PEOPLE, 0)
    walk(engine, PEOPLE[:20], 1)
    assert any(p.episodes for p in engine.state.people.values())
    return engine


async def test_a_snapshot_written_while_judging_goes_on_restores_the_state_captured(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "PART", 7)
    monkeypatch.setattr(snapshots, "READ", 3)  # read back three at a time, to the last
    engine = moved_on()
    assert (len(engine.state.devices), len(engine.state.people)) == (40, 20)  # nine parts
    captured = engine.snapshot()
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    judging = Judging(engine, pool, Feed(None))
    judging.capture = capture = snapshots.Capture(engine.state, 0, 0)

    async def judge_on() -> None:
        # Between the parts being written, three at a time: the twenty out of bounds come
        # back, the others leave (new people's states), one device is let go.
        for k in range(0, len(PEOPLE), 3):
            people = PEOPLE[k : k + 3]
            judging.changing(f"T{p}" for p in people)
            walk(engine, people, 2 if k < 20 else 1)
            await asyncio.sleep(0)
        judging.changing(["TP39"])
        engine.forget(["TP39"])

    try:
        async with pool.acquire() as conn:
            await asyncio.gather(snapshots.save(conn, Shard(0, 1), capture), judge_on())
            parts = await conn.fetchval("SELECT count(*) FROM engine_snapshot_parts")
            restored = (await restore(conn, rules(), Shard(0, 1)))[0]
    finally:
        await pool.close()
    assert parts == 9
    assert engine.snapshot() != captured  # judging did go on
    assert restored.snapshot() == captured


async def test_a_snapshot_killed_between_its_parts_leaves_the_one_before(pg_dsn: str) -> None:
    engine = moved_on()
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await snapshots.save(conn, Shard(0, 1), snapshots.Capture(engine.state, 0, 0))
            before = await conn.fetchval("SELECT count(*) FROM engine_snapshot_parts")
        killed = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.snapshot_crash", pg_dsn, "5"),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await killed.communicate()
        assert killed.returncode == -9, stderr.decode()
        async with pool.acquire() as conn:
            assert [
                tuple(r) for r in await conn.fetch("SELECT last_rid FROM engine_snapshots")
            ] == [(0,)]
            assert await conn.fetchval("SELECT count(*) FROM engine_snapshot_parts") == before
            restored = (await restore(conn, rules(), Shard(0, 1)))[0]
    finally:
        await pool.close()
    assert restored.snapshot() == engine.snapshot()


async def test_snapshots_written_before_parts_had_rows_still_restore(pg_dsn: str) -> None:
    engine = moved_on()
    devices, people = list(engine.state.devices.items()), list(engine.state.people.items())
    encode = msgspec.msgpack.encode
    in_parts = encode(
        [encode(EngineState(devices=dict(devices[k : k + 7]))) for k in range(0, 40, 7)]
        + [encode(EngineState(people=dict(people[k : k + 7]))) for k in range(0, 40, 7)]
    )
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            for blob in (engine.snapshot(), in_parts):
                await conn.execute("DELETE FROM engine_snapshots")
                await conn.execute(
                    "INSERT INTO engine_snapshots (last_rid, last_event_rid, state)"
                    " VALUES (0, 0, $1)",
                    blob,
                )
                restored = (await restore(conn, rules(), Shard(0, 1)))[0]
                assert restored.snapshot() == engine.snapshot()
    finally:
        await pool.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(PEOPLE), st.sampled_from([1, 2]), st.booleans()),
        max_size=25,
    ),
    parts_between=st.lists(st.integers(min_value=0, max_value=3), min_size=25, max_size=25),
)
def test_any_interleaving_of_judging_and_parts_writes_the_state_captured(
    steps: list[tuple[str, int, bool]], parts_between: list[int]
) -> None:
    """Whoever is judged or let go, in whatever order between whichever parts, the parts
    together are the state as captured (storage.snapshots.Capture, no database)."""
    engine = moved_on()
    captured = msgspec.msgpack.decode(engine.snapshot(), type=EngineState)
    judging = Judging(engine, None, Feed(None))  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshots, "PART", 7)
        judging.capture = capture = snapshots.Capture(engine.state, 0, 0)
        parts = capture.parts()
        written = []
        for (person, phase, let_go), n in zip(steps, parts_between, strict=False):
            written += [part for _, part in zip(range(n), parts, strict=False)]
            device = f"T{person}"
            judging.changing([device])
            if let_go:
                engine.forget([device])
            else:
                walk(engine, [person], phase)
        written += list(parts)
    got = EngineState()
    for blob in written:
        part = msgspec.msgpack.decode(blob, type=EngineState)
        got.devices.update(part.devices)
        got.people.update(part.people)
    assert msgspec.msgpack.encode(got) == msgspec.msgpack.encode(captured)
