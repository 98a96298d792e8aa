"""Engine shards (ingest/shards.py, ingest/restore.py): every person belongs to exactly
one shard, and a shard's snapshot in PostgreSQL brings back exactly its people — also when
the number of shards changes between runs."""

from __future__ import annotations

from geofence.engine import Engine
from geofence.model import Roster
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from ingest.restore import restore
from ingest.shards import Shard
from storage import snapshots
from storage.db import open_pool
from tests.kit import LIANDU, LIANDU_SEAT, fix, line, lishui_collection

PEOPLE = [f"P{n}" for n in range(40)]


def rules() -> RuleSet:
    from fencewatch.scenario import parse_supervisee

    people = [
        parse_supervisee({"id": p, "jurisdiction": [LIANDU], "devices": [f"T{p}"]}) for p in PEOPLE
    ]
    roster = Roster(timezone="Asia/Shanghai", supervisees=people)
    return RuleSet(roster, parse_feature_collection(lishui_collection()))


def test_each_person_and_their_topics_belong_to_one_shard() -> None:
    r = rules()
    layout = [Shard(k, 4) for k in range(4)]
    for person in PEOPLE:
        assert sum(s.owns(person) for s in layout) == 1
    topics = [s.topics(r) for s in layout]
    assert sum(len(t) for t in topics) == len(set().union(*topics)) == 3 * len(PEOPLE)
    assert "em/TP0/loc" in set().union(*topics)
    # One shard: the wildcard subscriptions, unknown devices included.
    assert "em/+/loc" in Shard(0, 1).topics(r)
    owner = next(s for s in layout if s.owns("P0"))
    other = next(s for s in layout if not s.owns("P0"))
    assert other.foreign("em/TP0/loc", r) and not owner.foreign("em/TP0/loc", r)
    assert not other.foreign("em/UNKNOWN/loc", r)  # rejected where it arrives, as unknown


async def test_a_new_shard_layout_starts_from_the_old_snapshots(pg_dsn: str) -> None:
    r = rules()
    single = Engine(r)
    for n, person in enumerate(PEOPLE):
        single.process([fix(f, f"T{person}") for f in line(LIANDU_SEAT, LIANDU_SEAT, 3, seq0=1)])
        assert n + 1 == len(single.state.devices)
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await snapshots.save(conn, Shard(0, 1), snapshots.Capture(single.state, 0, 0))
            restored = [(await restore(conn, r, Shard(k, 3)))[0] for k in range(3)]
            devices = [set(e.state.devices) for e in restored]
            assert sorted(d for part in devices for d in part) == sorted(single.state.devices)
            for k, part in enumerate(devices):
                assert all(Shard(k, 3).owns(r.device_owner[d]) for d in part)
            # Once the new layout has its own snapshots, the old one is let go.
            for k, engine in enumerate(restored):
                await snapshots.save(conn, Shard(k, 3), snapshots.Capture(engine.state, 0, 0))
            assert not await conn.fetchval("SELECT count(*) FROM engine_snapshots WHERE shards = 1")
            again = (await restore(conn, r, Shard(1, 3)))[0]
            assert set(again.state.devices) == devices[1]
    finally:
        await pool.close()
