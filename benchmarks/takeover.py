"""Take-over time (issue 19 item 5): what a worker taking over a shard does before it
judges again, timed against a running deployment's database — the rules loaded
(storage.rules; a worker already running has them), then ingest.restore: the shard's
newest snapshot decoded and every fix and event committed after it judged again.

benchmarks.pipeline does it once its window is over and the backlog drained, while the
service still runs and snapshots every 30 s: so it re-judges what a taking-over worker
would re-judge at that moment (from none up to 30 s of the shard's fixes). The alerts the
re-judging records are rolled back: the shard's holder has recorded them already."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from geofence.ruleset import RuleSet
from ingest.restore import restore
from ingest.shards import Shard
from storage.db import open_pool
from storage.rules import load_rules

TIMEZONE = "Asia/Shanghai"


class _Undo(Exception):
    pass


async def takeover(database_url: str, shard: Shard) -> dict[str, Any]:
    """`rules_s`, `restore_s` (snapshot + re-judge: the take-over of a running worker),
    `takeover_s` (both: a worker that starts for it), `rejudged` and `snapshot_bytes`."""
    pool: asyncpg.Pool = await open_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            started = time.perf_counter()
            roster, zones = await load_rules(conn, TIMEZONE)
            rules = RuleSet(roster, zones)
            loaded = time.perf_counter()
            size = await conn.fetchval(
                "SELECT coalesce(octet_length(s.state), (SELECT sum(octet_length(p.state))"
                "  FROM engine_snapshot_parts p WHERE p.snapshot_id = s.id))"
                " FROM engine_snapshots s WHERE shard = $1 AND shards = $2"
                " ORDER BY id DESC LIMIT 1",
                shard.index,
                shard.count,
            )
            try:
                async with conn.transaction():
                    begun = time.perf_counter()
                    *_, rejudged = await restore(conn, rules, shard)
                    done = time.perf_counter()
                    raise _Undo
            except _Undo:
                pass
    finally:
        await pool.close()
    return {
        "rules_s": round(loaded - started, 2),
        "restore_s": round(done - begun, 2),
        "takeover_s": round(loaded - started + done - begun, 2),
        "rejudged": rejudged,
        "snapshot_bytes": size,
    }
