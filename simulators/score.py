"""Score an engine on a scenario suite: `python -m simulators.score SUITE_DIR
[--engine "fencewatch replay"] [--baseline]`.

Runs the engine command on every scenario directory (one subprocess each, in parallel),
reads its stdout as one JSON alert a line, matches the alerts to truth.json and reports
precision, recall and detection delay per scenario kind and overall — next to the naive
baseline's with --baseline. The table goes to stderr, the figures as JSON to stdout.

Matching (docs/scenarios.md has the full statement):
- an alert can only match a truth event of the same type and supervisee (and device, for
  device faults), whose window [start − 60 s, end + grace] holds the alert's `ts`;
- the first alert on a real event is a true positive; later ones on the same event are
  duplicates, counted as false positives; an alert matching nothing is a false positive;
- an alert on an `optional` event counts for nothing either way, and optional events are
  never missed; a real event without an alert is a miss;
- delay = alert ts − event start (device time).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fencewatch.scenario import ScenarioError, iso_to_ms

EARLY_MS = 60_000
GRACE_MS = 5 * 60_000
FAULTS = frozenset({"device_offline", "no_fix", "low_battery", "strap_tamper"})
BASELINE = f"{shlex.quote(sys.executable)} -m simulators.baseline"


@dataclass(frozen=True)
class Alert:
    type: str
    supervisee: str
    device: str
    ts: int
    late: bool = False


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0  # includes duplicates
    dup: int = 0
    fn: int = 0
    ignored: int = 0  # alerts on optional events
    late_truth: int = 0  # late-detectable real events that were found…
    late_flagged: int = 0  # …and whose alert said late: true
    errors: int = 0  # scenarios the command failed on
    delays: list[int] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("tp", "fp", "dup", "fn", "ignored", "late_truth", "late_flagged", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays += other.delays

    def summary(self) -> dict[str, Any]:
        alerts = self.tp + self.fp
        delays = sorted(self.delays)
        return {
            "precision": round(self.tp / alerts, 3) if alerts else None,
            "recall": round(self.tp / (self.tp + self.fn), 3) if self.tp + self.fn else None,
            "delay_median_s": _quantile(delays, 0.5),
            "delay_p90_s": _quantile(delays, 0.9),
            "tp": self.tp,
            "fp": self.fp,
            "duplicates": self.dup,
            "fn": self.fn,
            "ignored": self.ignored,
            "late_flagged": f"{self.late_flagged}/{self.late_truth}",
            "errors": self.errors,
        }


def _quantile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, round(q * (len(values) - 1)))
    return round(values[k] / 1000, 1)


def parse_alerts(text: str) -> tuple[list[Alert], int]:
    """Alerts from replay-style output; lines that are not alerts are counted, not fatal."""
    alerts, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if raw.get("action", "raise") != "raise":
                continue
            alerts.append(
                Alert(
                    str(raw["type"]),
                    str(raw["supervisee"]),
                    str(raw.get("device", "")),
                    iso_to_ms(raw["ts"], "ts"),
                    bool(raw.get("late", False)),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError, ScenarioError):
            bad += 1
    return alerts, bad


def _covers(event: dict[str, Any], alert: Alert, grace_ms: int) -> bool:
    # A gathering is one event of several people: an alert on any of them matches it.
    people = event.get("people") or (event["supervisee"],)
    if event["type"] != alert.type or alert.supervisee not in people:
        return False
    if alert.type in FAULTS and event["device"] != alert.device:
        return False
    end = event["end"]
    # `earliest`: an episode whose breach sets in part-way (leave: stopped or overstayed
    # on the road) is matched by an alert anywhere in it; its delay still counts from start.
    earliest = event.get("earliest", event["start"] - EARLY_MS)
    return earliest <= alert.ts and (end is None or alert.ts <= end + grace_ms)


def match(truth: list[dict[str, Any]], alerts: Iterable[Alert], grace_ms: int = GRACE_MS) -> Tally:
    tally = Tally()
    found: set[int] = set()
    for alert in sorted(alerts, key=lambda a: a.ts):
        hits = [k for k, e in enumerate(truth) if _covers(e, alert, grace_ms)]
        fresh = [k for k in hits if not truth[k].get("optional") and k not in found]
        if fresh:
            k = min(fresh, key=lambda k: truth[k]["start"])
            found.add(k)
            tally.tp += 1
            tally.delays.append(max(0, alert.ts - truth[k]["start"]))
            if truth[k].get("late"):
                tally.late_truth += 1
                tally.late_flagged += alert.late
        elif any(truth[k].get("optional") for k in hits):
            tally.ignored += 1
        else:
            tally.fp += 1
            tally.dup += bool(hits)
    tally.fn = sum(1 for k, e in enumerate(truth) if not e.get("optional") and k not in found)
    return tally


def _command(spec: str) -> list[str]:
    argv = shlex.split(spec)
    if argv and argv[0] == "fencewatch" and shutil.which("fencewatch") is None:
        argv = [sys.executable, "-m", "fencewatch.cli", *argv[1:]]
    return argv


def match_by_type(
    truth: list[dict[str, Any]], alerts: list[Alert], grace_ms: int
) -> dict[str, Tally]:
    """`match` split by alert type (matching never pairs different types, so the parts add
    up to the whole)."""
    types = {e["type"] for e in truth} | {a.type for a in alerts}
    return {
        t: match([e for e in truth if e["type"] == t], [a for a in alerts if a.type == t], grace_ms)
        for t in sorted(types)
    }


def run_one(
    command: list[str], scenario: Path, timeout: float, grace_ms: int
) -> tuple[dict[str, Tally], str | None]:
    truth = json.loads((scenario / "truth.json").read_text())
    try:
        done = subprocess.run(
            [*command, str(scenario)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": Tally(errors=1)}, f"{scenario.name}: {exc}"
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        return {
            "error": Tally(errors=1)
        }, f"{scenario.name}: exit {done.returncode}: {tail[0][:200]}"
    alerts, _ = parse_alerts(done.stdout)
    return match_by_type(truth, alerts, grace_ms), None


def kind_of(scenario: Path) -> str:
    return scenario.name.rsplit("-", 1)[0]


def score(
    suite: Path, command: list[str], jobs: int, timeout: float, grace_ms: int = GRACE_MS
) -> tuple[dict[str, Tally], dict[str, Tally], list[str]]:
    """Tallies per scenario kind and per alert type, and what went wrong."""
    scenarios = sorted(p.parent for p in suite.glob("*/truth.json"))
    by_kind: dict[str, Tally] = defaultdict(Tally)
    by_type: dict[str, Tally] = defaultdict(Tally)
    problems = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda s: run_one(command, s, timeout, grace_ms), scenarios))
    for scenario, (tallies, problem) in zip(scenarios, results, strict=True):
        for kind, tally in tallies.items():
            by_kind[kind_of(scenario)].add(tally)
            by_type[kind].add(tally)
        if problem:
            problems.append(problem)
    return dict(by_kind), dict(by_type), problems


def _overall(by_kind: dict[str, Tally]) -> Tally:
    total = Tally()
    for tally in by_kind.values():
        total.add(tally)
    return total


def _cell(s: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "  -  " if v is None else f"{v:5.2f}"

    def d(v: float | None) -> str:
        return "    -" if v is None else f"{v:5.0f}"

    return (
        f"{f(s['precision'])} {f(s['recall'])} {d(s['delay_median_s'])} {d(s['delay_p90_s'])} "
        f"{s['fp']:4d} {s['duplicates']:4d} {s['fn']:3d}"
    )


def table(columns: dict[str, dict[str, Any]], by: str) -> str:
    """Side by side, one row per kind (`by` = "kinds") or alert type ("types")."""
    names = list(columns)
    kinds = sorted({k for c in columns.values() for k in c[by]})
    head = "  P     R    med   p90    FP  dup  FN"
    lines = [f"{by[:-1]:18s} | " + " | ".join(f"{n:^37s}" for n in names)]
    lines.append(f"{'':18s} | " + " | ".join(head for _ in names))
    for kind in [*kinds, "OVERALL"]:
        cells = [
            _cell(c["overall"] if kind == "OVERALL" else c[by].get(kind, Tally().summary()))
            for c in columns.values()
        ]
        lines.append(f"{kind:18s} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suite", type=Path, metavar="SUITE_DIR")
    parser.add_argument(
        "--engine",
        default="fencewatch replay",
        help='command to score, given each scenario dir ("" for none)',
    )
    parser.add_argument("--baseline", action="store_true", help="also score the naive baseline")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per scenario")
    parser.add_argument(
        "--grace", type=float, default=GRACE_MS / 1000, help="seconds after an event's end (300)"
    )
    args = parser.parse_args(argv)
    commands = {}
    if args.engine:
        commands["engine"] = _command(args.engine)
    if args.baseline:
        commands["baseline"] = _command(BASELINE)
    if not commands:
        parser.error("nothing to score: give --engine or --baseline")
    report: dict[str, Any] = {}
    for name, command in commands.items():
        by_kind, by_type, problems = score(
            args.suite, command, max(1, args.jobs), args.timeout, int(args.grace * 1000)
        )
        report[name] = {
            "command": shlex.join(command),
            "overall": _overall(by_kind).summary(),
            "kinds": {k: t.summary() for k, t in sorted(by_kind.items())},
            "types": {k: t.summary() for k, t in sorted(by_type.items())},
            "problems": problems[:20],
        }
        for problem in problems[:5]:
            print(f"{name}: {problem}", file=sys.stderr)
    print(table(report, "kinds"), file=sys.stderr)
    print(file=sys.stderr)
    print(table(report, "types"), file=sys.stderr)
    json.dump(report, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
