"""`python -m benchmarks.state [--tags 100000] [--rounds 10]`: what a tag costs the engine
in memory, and what its snapshot costs, on this machine, in one process, no I/O (issue 19).

The benchmark fleet (benchmarks.fleet: N supervisees in 莲都区, one tag each, two
exclusion zones each, 1 % crossing the border) reports `--rounds` fixes per tag, 30 s
apart, through the pure engine in batches of 5,000 as ingest judges them, the clock ticking
after each. Prints one JSON object:

- `rules_bytes_per_tag`: the compiled roster (geofence.ruleset) per tag, traced with
  tracemalloc from the roster as read;
- `state_bytes_per_tag`: the engine state the fixes left (devices, people, watchdogs);
- `gc_tracked`: objects the garbage collector walks at a full collection (the whole
  process), `gc_tracked_per_tag` how many of them the roster and the engine's state added
  per tag, and `full_gc_ms` one such collection (a pause of the event loop in the service);
- `snapshot_bytes_per_tag`, `snapshot_encode_ms`, `snapshot_decode_ms`: the shard snapshot
  (Engine.snapshot) and reading it back (Engine.restore);
- `judge_fixes_per_s`: the last round judged again on an engine restored from the snapshot
  taken before it — the re-judging a worker taking over the shard does (ingest.restore).

Memory figures are bytes and counts, the same on any machine; times depend on the machine
and its load.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import fleet as fleets
from fencewatch.scenario import read_roster, read_zones
from geofence.engine import Engine
from geofence.model import Fix
from geofence.ruleset import RuleSet

BATCH = 5000
INTERVAL_MS = 30_000
T0_MS = 1_780_000_000_000


def _round(fleet: fleets.Fleet, r: int) -> list[Fix]:
    """Every tag's fix number `r`, the tags in turn over the 30 s (as the generator sends)."""
    n = len(fleet)
    idx = np.arange(n)
    ts = T0_MS + r * INTERVAL_MS + idx * INTERVAL_MS // n
    lat, lon = fleet.positions(idx, ts)
    return [
        Fix(fleets.device_id(i), r, t, t + 200, a, o, 8.0, "gnss", 0.2, None, 80)
        for i, t, a, o in zip(idx.tolist(), ts.tolist(), lat.tolist(), lon.tolist(), strict=True)
    ]


def _judge(engine: Engine, fixes: list[Fix]) -> None:
    for k in range(0, len(fixes), BATCH):
        batch = fixes[k : k + BATCH]
        engine.process(batch)
        engine.tick(batch[-1].at)


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(tags: int, rounds: int, seed: int = 4) -> dict[str, Any]:
    """The figures above, for `tags` tags after `rounds` fixes each (rounds >= 2)."""
    fleet = fleets.build(tags, 0.01, seed)
    with tempfile.TemporaryDirectory() as tmp:
        fleets.write_scenario(fleet, Path(tmp))
        zones = read_zones(Path(tmp) / "zones.geojson")
        roster_path = Path(tmp) / "roster.json"
        gc.collect()
        tracked_before = len(gc.get_objects())
        tracemalloc.start()
        try:
            before = _traced()
            rules = RuleSet(read_roster(roster_path), zones)
            with_rules = _traced()
            engine = Engine(rules)
            for r in range(rounds - 1):
                _judge(engine, _round(fleet, r))
            last = _round(fleet, rounds - 1)
            blob = engine.snapshot()
            _judge(engine, last)
            del last
            with_state = _traced() - sys.getsizeof(blob)  # the snapshot is not state
        finally:
            tracemalloc.stop()
    gc.collect()
    tracked = len(gc.get_objects())
    started = time.perf_counter()
    gc.collect()
    full_gc = time.perf_counter() - started
    started = time.perf_counter()
    blob = engine.snapshot()
    encode = time.perf_counter() - started
    started = time.perf_counter()
    restored = Engine.restore(rules, blob)
    decode = time.perf_counter() - started
    again = _round(fleet, rounds - 1)
    started = time.perf_counter()
    _judge(restored, again)
    judged = time.perf_counter() - started
    return {
        "tags": tags,
        "rounds": rounds,
        "rules_bytes_per_tag": round((with_rules - before) / tags),
        "state_bytes_per_tag": round((with_state - with_rules) / tags),
        "gc_tracked": tracked,
        "gc_tracked_per_tag": round((tracked - tracked_before) / tags, 2),
        "full_gc_ms": round(full_gc * 1000, 1),
        "snapshot_bytes_per_tag": round(len(blob) / tags),
        "snapshot_encode_ms": round(encode * 1000, 1),
        "snapshot_decode_ms": round(decode * 1000, 1),
        "judge_fixes_per_s": round(len(again) / judged),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.state", description=__doc__)
    p.add_argument("--tags", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=10, help="fixes per tag, 30 s apart")
    p.add_argument("--seed", type=int, default=4)
    opts = p.parse_args(argv)
    if opts.tags < 1 or opts.rounds < 2:
        p.error("--tags must be >= 1 and --rounds >= 2")
    print(json.dumps(measure(opts.tags, opts.rounds, opts.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
