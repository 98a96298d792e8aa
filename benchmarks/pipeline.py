"""`python -m benchmarks.pipeline`: fencewatch end to end on this machine (issue 4).

Three phases, one after another (they share two cores), on one private Mosquitto
(benchmarks.stack): the load generator's own maximum and the ceiling of a bare paho-mqtt
QoS 1 subscriber (benchmarks.probes), then `fencewatch serve` under the asked load
(benchmarks.measure). Prints one JSON object (`--json`) or a table (benchmarks.report).
docs/benchmarks.md says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import fleet as fleets
from benchmarks import procs, report
from benchmarks.measure import measure_service
from benchmarks.probes import probe_ceiling, probe_generator
from benchmarks.stack import running

PG_ADMIN = os.environ.get(
    "FENCEWATCH_BENCH_PG",
    os.environ.get("FENCEWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
)


async def bench(opts: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    started = time.time()
    machine = procs.machine()
    fleet = fleets.build(opts.tags, opts.crossers, opts.seed)
    fleets.save(fleet, run_dir / "fleet.npz")
    async with running(
        run_dir, opts.pg_admin, opts.redis_url, fleet, opts.keep, opts.cache_roster
    ) as stack:
        gen = await probe_generator(stack, opts)
        ceiling = await probe_ceiling(stack, opts)
        pipe = await measure_service(stack, opts, fleet)
        dropped = stack.broker_dropped()
    peaks = [p for p in pipe["rss_peak_mb"] if p is not None]
    return {
        "fixes_per_s": pipe["fixes_per_s"],
        "p50_ms": pipe["alert"]["p50_ms"],
        "p99_ms": pipe["alert"]["p99_ms"],
        "max_ms": pipe["alert"]["max_ms"],
        "ceiling_fixes_per_s": ceiling["fixes_per_s"],
        "generator_max_fixes_per_s": gen["fixes_per_s"],
        "rss_mb": round(sum(peaks), 1) if peaks else None,
        "backlog_end": pipe["backlog_end"],
        "backlog_start": pipe["backlog_start"],
        "offered_fixes_per_s": pipe["offered_fixes_per_s"],
        "alerts_measured": pipe["alert"]["n"],
        "stored_p50_ms": pipe["stored"]["p50_ms"],
        "stored_p99_ms": pipe["stored"]["p99_ms"],
        "stored_max_ms": pipe["stored"]["max_ms"],
        "cpu_ms_per_fix": pipe["cpu_ms_per_fix"]["service"],
        "cpu_ms_per_fix_worker": pipe["cpu_ms_per_fix"]["ingest"],
        "cpu_ms_per_fix_api_scheduler": pipe["cpu_ms_per_fix"]["api_scheduler"],
        "cpu_pct_worker": max(pipe["cpu_pct"][f"worker{i}"] for i in range(opts.workers)),
        "cpu_pct_api_scheduler": pipe["cpu_pct"]["api_scheduler"],
        "fixes_per_batch": pipe["fixes_per_batch"],
        "takeover_s": pipe["takeover"]["takeover_s"],
        "packing": pipe["packing"],
        "ceiling_msgs_per_s": ceiling["msgs_per_s"],
        "ceiling_bound_by_generator": ceiling["bound_by_generator"],
        "generator_max_msgs_per_s": gen["msgs_per_s"],
        "rss_ready_mb": pipe["rss_ready_mb"],
        "rss_worker_mb": _largest_worker(pipe["rss_peak_mb"]),
        "rss_worker_end_mb": _largest_worker(pipe["rss_end_mb"]),
        "drained": pipe["drained"],
        "rejected": pipe["rejected"],
        "metrics_missed": pipe["metrics_missed"],
        "broker_dropped": dropped,
        "load_s": stack.load_s,
        "roster_cached": stack.roster_cached,
        "cpu_pct": pipe["cpu_pct"],
        "params": {
            "tags": opts.tags,
            "interval": opts.interval,
            "batch": opts.batch,
            "workers": opts.workers,
            "shards": opts.shards,
            "duration": opts.duration,
            "warmup": opts.warmup,
            "probe": opts.probe,
            "generators": opts.generators,
            "window": opts.window,
            "max_backlog": opts.max_backlog,
            "crossers": int(fleet.crosser.sum()),
            "seed": opts.seed,
            "pack_hour": opts.pack_hour,
        },
        "machine": machine,
        "phases": {"generator_max": gen, "ceiling": ceiling, "pipeline": pipe},
        "profile": pipe["profile"],
        "run_dir": str(run_dir) if opts.keep else None,
        "elapsed_s": round(time.time() - started, 1),
    }


def _largest_worker(mb: list[float | None]) -> float | None:
    """The largest ingest worker's figure: where the engine state lives (the last process
    runs the API and the scheduler)."""
    return max((p for p in mb[:-1] if p is not None), default=None)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tags", type=int, default=1000, help="supervisees, one tag each")
    p.add_argument(
        "--interval", type=float, default=1.0, help="s between a tag's fixes; 0 = flat out"
    )
    p.add_argument("--batch", type=int, default=1, help="fixes per message (spec 4.1 batch)")
    p.add_argument("--workers", type=int, default=1, help="fencewatch serve processes")
    p.add_argument(
        "--shards", type=int, help="engine shards (FENCEWATCH_SHARDS; default: one per worker)"
    )
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    p.add_argument(
        "--warmup", type=float, default=None, help="s before measuring (default: 10 or 1 period)"
    )
    p.add_argument("--probe", type=float, default=10.0, help="s for each of phases 1 and 2")
    p.add_argument("--generators", type=int, default=1, help="load generator processes")
    p.add_argument("--window", type=int, default=10_000, help="unacked messages per generator")
    p.add_argument(
        "--max-backlog",
        type=int,
        default=60_000,
        help="flat out (--interval 0): hold the generator while its consumer is this many"
        " fixes behind (enough to keep each worker's batches full: docs/benchmarks.md)",
    )
    p.add_argument("--crossers", type=float, default=0.01, help="share of tags crossing")
    p.add_argument("--drain", type=float, default=30.0, help="s to wait for the backlog after")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument(
        "--pack-hour",
        action="store_true",
        help="plant an hour of every tag's fixes before the window and pack it during it",
    )
    p.add_argument("--profile", metavar="FILE", help="py-spy the service; collapsed stacks here")
    p.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL DSN allowed to CREATE DATABASE")
    p.add_argument("--redis-url", default=None, help="use this Redis instead of a private one")
    p.add_argument("--keep", action="store_true", help="keep the database and the run folder")
    p.add_argument(
        "--cache-roster",
        action="store_true",
        help="keep the loaded roster as template database fw_bench_roster_<hash> and start"
        " later runs of the same roster from a copy (loading 100,000 people takes minutes)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    opts = p.parse_args(argv)
    if opts.tags < 1 or opts.batch < 1 or opts.duration <= 0 or opts.interval < 0:
        p.error("--tags and --batch must be >= 1, --duration > 0, --interval >= 0")
    if opts.workers < 1 or opts.generators < 1:
        p.error("--workers and --generators must be >= 1")
    if opts.shards is None:
        opts.shards = opts.workers
    if opts.shards % opts.workers:
        p.error("--shards must be a multiple of --workers, so each worker judges as many")
    if opts.warmup is None:
        # At least one reporting period, so every tag has reported before measuring.
        opts.warmup = max(10.0, opts.batch * opts.interval)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="fw-bench-"))
    try:
        result = asyncio.run(bench(opts, run_dir))
    except RuntimeError as exc:  # a part of the run failed; it says which and why
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not opts.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result, ensure_ascii=False) if opts.json else report.table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
