"""The end-to-end benchmark (benchmarks/pipeline.py) runs at a tiny size and reports its
figures. No timing is asserted: this only keeps the benchmark working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = (int, float)
REQUIRED = {
    "fixes_per_s": NUMBERS,
    "ceiling_fixes_per_s": NUMBERS,
    "generator_max_fixes_per_s": NUMBERS,
    "rss_mb": NUMBERS,
    "backlog_end": NUMBERS,
    # No alert can be confirmed within seconds (default policy: 3 fixes over 60 s).
    "p50_ms": (*NUMBERS, type(None)),
    "p99_ms": (*NUMBERS, type(None)),
    "max_ms": (*NUMBERS, type(None)),
    "stored_max_ms": (*NUMBERS, type(None)),
    "cpu_ms_per_fix": NUMBERS,
    "cpu_ms_per_fix_worker": NUMBERS,
    "cpu_pct_worker": NUMBERS,
    "cpu_pct_api_scheduler": NUMBERS,
    "takeover_s": NUMBERS,
}


def test_pipeline_benchmark_reports_its_figures() -> None:
    # Same PostgreSQL as the other tests (conftest.PG_ADMIN).
    env = dict(os.environ)
    if "FENCEWATCH_TEST_PG" in env:
        env.setdefault("FENCEWATCH_BENCH_PG", env["FENCEWATCH_TEST_PG"])
    args = ["--tags", "50", "--interval", "1", "--duration", "5", "--warmup", "3"]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", *args, "--probe", "2", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    for key, types in REQUIRED.items():
        assert isinstance(result[key], types), (key, result[key])
    assert result["params"]["tags"] == 50
    assert result["machine"]["nproc"] >= 1
    # 50 tags at one fix a second: the service stored something.
    assert result["fixes_per_s"] > 0
    # A worker taking over the shard judged again what the newest snapshot had not seen.
    assert result["phases"]["pipeline"]["takeover"]["rejudged"] > 0


def test_jt808_gateway_benchmark_reports_its_figures() -> None:
    env = dict(os.environ)
    if "FENCEWATCH_TEST_PG" in env:
        env.setdefault("FENCEWATCH_BENCH_PG", env["FENCEWATCH_TEST_PG"])
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.jt808", "--terminals", "5", "--duration", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    # Every fix the terminals were acknowledged was stored.
    assert result["acked"] > 0 and result["stored"] == result["acked"]
    assert isinstance(result["stored_per_s"], int) and result["machine"]["nproc"] >= 1


def test_storage_benchmark_reports_its_figures() -> None:
    """benchmarks/storage.py at a tiny size: both tiers measured, the hot tier packed but
    its newest hours, every fix archived but the newest day's."""
    env = dict(os.environ)
    if "FENCEWATCH_TEST_PG" in env:
        env.setdefault("FENCEWATCH_BENCH_PG", env["FENCEWATCH_TEST_PG"])
    args = ["--people", "2", "--days", "3", "--interval", "300", "--hot-days", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.storage", *args, "--queries", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["fixes"] == 2 * 3 * 288
    for tier in ("hot", "archive"):
        assert result[tier]["bytes_per_fix"] > 0
        assert result[tier]["person_day"]["fixes_per_query"] > 0
        assert isinstance(result[tier]["person_day"]["p99_ms"], NUMBERS)
    assert 0 < result["archive"]["fixes"] < result["fixes"]
    # Packed hourly as it was loaded: the newest hours are still rows, the rest packed.
    hot = result["hot"]
    assert hot["packed"]["fixes"] + hot["unpacked"]["fixes"] == result["fixes"]
    assert 0 < hot["unpacked"]["fixes"] < hot["packed"]["fixes"]
    assert result["archive"]["fixes_per_s"] > 0
