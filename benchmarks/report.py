"""Figures from what a run saw: latency joins and percentiles, and the readable table."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fleet import device_index


def sent_times(paths: Iterable[Path]) -> dict[tuple[int, int], float]:
    """(device index, ts) → wall time the generator sent that fix, from its records."""
    sent: dict[tuple[int, int], float] = {}
    for path in paths:
        for d, ts, wall in np.load(path).tolist():
            sent[(int(d), int(ts))] = wall
    return sent


def latency(
    seen: Iterable[tuple[str, int, float]],
    sent: dict[tuple[int, int], float],
    window: tuple[float, float],
) -> dict[str, Any]:
    """Percentiles of (seen − sent) for the fixes sent within `window`, and p99 and max by
    minute of the window (`by_minute`: when a stall came); `unmatched` counts what was seen
    for a fix the generator did not record (none expected)."""
    ms, minutes, unmatched = [], [], 0
    for device, ts, when in seen:
        index = device_index(device)
        wall = sent.get((index, ts)) if index is not None else None
        if wall is None:
            unmatched += 1
        elif window[0] <= wall <= window[1]:
            ms.append((when - wall) * 1000)
            minutes.append(int((wall - window[0]) // 60))
    if not ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "unmatched": unmatched}
    p50, p99 = np.percentile(ms, [50, 99]).tolist()
    spread = np.array(ms)
    of = np.array(minutes)
    by_minute = [
        [
            round(float(np.percentile(spread[of == m], 99)), 1),
            round(float(spread[of == m].max()), 1),
        ]
        for m in sorted(set(minutes))
    ]
    return {
        "n": len(ms),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(ms), 1),
        "by_minute": by_minute,
        "unmatched": unmatched,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(r: dict[str, Any]) -> str:
    p, m = r["params"], r["machine"]
    rows = [
        ("fixes committed+judged /s", r["fixes_per_s"]),
        ("offered fixes /s (generator, window)", r["offered_fixes_per_s"]),
        (
            "fix→alert p50 / p99 / max ms",
            f"{_fmt(r['p50_ms'])} / {_fmt(r['p99_ms'])} / {_fmt(r['max_ms'])}",
        ),
        ("  alerts measured", r["alerts_measured"]),
        (
            "fix→stored p50 / p99 / max ms",
            f"{_fmt(r['stored_p50_ms'])} / {_fmt(r['stored_p99_ms'])} / {_fmt(r['stored_max_ms'])}",
        ),
        ("service CPU ms per fix (all processes)", f"{r['cpu_ms_per_fix']:.3f}"),
        ("  ingest workers' CPU ms per fix", f"{r['cpu_ms_per_fix_worker']:.3f}"),
        ("  API/scheduler process CPU ms per fix", f"{r['cpu_ms_per_fix_api_scheduler']:.3f}"),
        ("busiest ingest worker CPU % of a core", r["cpu_pct_worker"]),
        ("API/scheduler process CPU % of a core", r["cpu_pct_api_scheduler"]),
        ("fixes per committed batch", r["fixes_per_batch"]),
        ("take-over s (rules + snapshot + re-judge)", r["takeover_s"]),
        ("bare paho QoS 1 subscriber fixes /s", r["ceiling_fixes_per_s"]),
        ("  bounded by the generator", r["ceiling_bound_by_generator"]),
        ("generator max fixes /s (no subscriber)", r["generator_max_fixes_per_s"]),
        (
            "backlog (fixes) window start → end",
            f"{_fmt(r['backlog_start'])} → {_fmt(r['backlog_end'])}",
        ),
        ("drained after the window", r["drained"]),
        ("service peak RSS MB (ready → peak)", f"{_fmt(r['rss_ready_mb'])} → {_fmt(r['rss_mb'])}"),
        ("  largest ingest worker peak RSS MB", r["rss_worker_mb"]),
        ("  largest ingest worker RSS MB at the end", r["rss_worker_end_mb"]),
        (
            "messages rejected / broker drops",
            f"{_fmt(r['rejected'])} / {_fmt(r['broker_dropped'])}",
        ),
        ("roster load s", r["load_s"]),
    ]
    rows += [(f"CPU % {role}", pct) for role, pct in r["cpu_pct"].items()]
    width = max(len(name) for name, _ in rows)
    head = (
        f"fencewatch pipeline: {p['tags']:,} tags, interval {p['interval']} s, batch "
        f"{p['batch']}, {p['workers']} worker(s), {p['duration']} s measured after "
        f"{p['warmup']} s warm-up\n{m['nproc']} cores, {m['memory_gb']} GB, {m['cpu_model']}, "
        f"load average at start {m['loadavg_at_start']}"
    )
    lines = [f"  {name.ljust(width)}  {_fmt(value)}" for name, value in rows]
    profile = r.get("profile")
    if profile:
        lines.append(f"  profile ({profile['samples']} samples), self time:")
        lines += [f"    {line}" for line in profile["self"][:10]]
    return head + "\n" + "\n".join(lines)
