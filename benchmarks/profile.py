"""Where the service spends its CPU: py-spy samples it during the measured window, and the
collapsed stacks are summed into the functions and packages with the most samples.

Only the thread holding the GIL is sampled (`--gil`): the service's Python work runs one
thread at a time, so these samples are where its interpreter time goes (a thread waiting
in select/epoll, or for the GIL, is not counted; C code that releases the GIL isn't
either). Self = the function was running (the leaf of the stack); total = it was on the
stack. py-spy pauses the process for each sample (its default, so stacks are consistent),
at `RATE` per second: a small cost to the figures of a profiled run.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT

RATE = 100
TOP = 20
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_STDLIB = re.compile(r"/lib/python3\.\d+/")
_ROOT = str(ROOT) + "/"


def _where(file: str) -> tuple[str, str]:
    """(package, short path) of a source file: installed code by its package, the
    standard library as stdlib:<module>, this repository's code by its top folder."""
    if "site-packages/" in file:
        rest = file.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0], rest
    if m := _STDLIB.search(file):
        rest = file[m.end() :]
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py"), rest
    rest = file.removeprefix(_ROOT)
    return rest.split("/", 1)[0], rest


class Profiler:
    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.pid = pid
        self.seconds = seconds
        self.out = out
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        spy = shutil.which("py-spy")
        if spy is None:
            raise FileNotFoundError("--profile needs py-spy (pip install py-spy)")
        self.proc = await asyncio.create_subprocess_exec(
            spy,
            "record",
            *("--pid", str(self.pid), "--duration", str(max(1, round(self.seconds)))),
            *("--rate", str(RATE), "--format", "raw", "--output", str(self.out), "--gil"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def finish(self) -> dict[str, Any]:
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), self.seconds + 60)
        return summarize(self.out.read_text())


def summarize(collapsed: str, top: int = TOP) -> dict[str, Any]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    callees: dict[str, set[str]] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        names = []
        for raw in stack.split(";"):
            m = _FRAME.match(raw)
            package, path = _where(m["file"]) if m else ("?", "")
            names.append(f"{m['func']} ({path})" if m else raw)
        own[names[-1]] += n
        packages[package] += n  # the leaf's
        for name in set(names):
            total[name] += n
        for caller, callee in pairwise(names):
            callees.setdefault(caller, set()).add(callee)
    # Entry chains (<module> → main → … → Runner.run, Thread._bootstrap → … → loop_forever)
    # only pass their one callee's time through: left out of the totals, which would
    # otherwise open with them.
    for name, called in callees.items():
        if len(called) == 1 and not own[name]:
            del total[name]

    def share(counter: Counter[str]) -> list[str]:
        return [f"{100 * n / samples:5.1f}%  {name}" for name, n in counter.most_common(top)]

    return {
        "samples": samples,
        "self": share(own) if samples else [],
        "total": share(total) if samples else [],
        "self_by_package": share(packages) if samples else [],
    }
