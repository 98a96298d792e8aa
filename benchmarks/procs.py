"""The processes of a run and what they cost: child processes speaking JSON lines, CPU
seconds per role over a window, peak RSS.

Everything shares two cores, so CPU is counted for every role we start (and for the
machine as a whole: the difference is what other programs took meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """`python -m <module>` whose stdout is JSON lines, each with `t` (wall time);
    `latest` is the last one."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.latest: dict[str, Any] = {}
        self.previous: dict[str, Any] = {}
        self._first = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, name: str, module: str, args: list[str], log: Path, stdin: bool = False
    ) -> Child:
        with await asyncio.to_thread(log.open, "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc, name)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.previous, self.latest = self.latest, json.loads(raw)
            self._first.set()

    def at(self, key: str, t: float) -> float:
        """The counter `key` at wall time `t`, from the last two reports (linear), so that
        it lines up with a reading taken elsewhere at `t`."""
        a, b = self.previous, self.latest
        if not a or b["t"] <= a["t"] or b.get("done"):
            return float(b[key])
        return float(a[key] + (b[key] - a[key]) * (t - a["t"]) / (b["t"] - a["t"]))

    async def first_line(self) -> dict[str, Any]:
        """Wait for the child's first report (it is up), or fail if it exits first."""
        waiter = asyncio.create_task(self._first.wait())
        await asyncio.wait(
            [waiter, asyncio.create_task(self.proc.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not waiter.done():
            waiter.cancel()
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}")
        return self.latest

    async def finish(self, grace: float) -> dict[str, Any]:
        """Wait for the child to exit (killing it after `grace` seconds); its last line."""
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await self._reader
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}")
        return self.latest

    def send(self, line: str) -> None:
        """Write to the child's stdin (started with `stdin=True`), unless it has exited."""
        if self.proc.stdin is not None and self.proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                self.proc.stdin.write(line.encode())

    def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()


class CpuMeter:
    """CPU seconds (user + system) per role between `start` and `stop`.

    Processes come and go during a long window (a connection pool replaces its database
    connections): `watch` adds the ones that appeared, and `poll` remembers each one's last
    reading, so one that exits still counts up to its last poll (at most a poll short)."""

    def __init__(self, roles: dict[str, Iterable[int]]) -> None:
        self.roles = {role: _processes(pids) for role, pids in roles.items()}
        self._before: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._machine = 0.0

    def start(self) -> None:
        self.poll()
        self._before = dict(self._last)
        self._machine = _machine_busy()

    def watch(self, role: str, pids: Iterable[int]) -> None:
        """Count these processes too; one new since `start` with all of its CPU."""
        known = {p.pid for p in self.roles[role]}
        self.roles[role] += _processes(pid for pid in pids if pid not in known)

    def poll(self) -> None:
        for procs in self.roles.values():
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    self._last[p.pid] = t.user + t.system

    def stop(self) -> dict[str, float]:
        self.poll()
        used = {
            role: sum(self._last.get(p.pid, 0.0) - self._before.get(p.pid, 0.0) for p in procs)
            for role, procs in self.roles.items()
        }
        used["machine"] = _machine_busy() - self._machine
        # What the rest of the machine took meanwhile: other programs, the kernel.
        used["other"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return {role: round(seconds, 2) for role, seconds in used.items()}


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on the machine (shared with anything else using it)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def peak_rss_mb(pid: int) -> float | None:
    """The process's high-water resident set (Linux VmHWM), in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def rss_mb(pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }
