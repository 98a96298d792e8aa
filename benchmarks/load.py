"""The load: generator processes (benchmarks.generator) for a phase, and the bound
that keeps a flat-out generator a bounded distance ahead of its consumer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from benchmarks.procs import Child
from benchmarks.stack import Stack

FINISH_S = 30.0  # a stopped generator drains its acks (<= 10 s) and exits


async def start_generators(
    stack: Stack,
    opts: argparse.Namespace,
    interval: float,
    seconds: float,
    tag: str,
    credit: bool = False,
) -> list[Child]:
    """`--generators` processes sharing the fleet, running for at most `seconds`, once
    each has connected; `tag` names the phase in their file names. With `credit`, they
    wait for a `Bound` to allow each message."""
    gens = []
    for g in range(opts.generators):
        args = [
            *("--mqtt", stack.mqtt, "--fleet", str(stack.run_dir / "fleet.npz")),
            *("--part", str(g), "--parts", str(opts.generators)),
            *("--interval", str(interval), "--batch", str(opts.batch)),
            *("--seconds", str(seconds), "--window", str(opts.window)),
            *("--record", str(stack.run_dir / f"sent-{tag}-{g}.npy")),
            *(["--credit"] if credit else []),
        ]
        log = stack.run_dir / f"generator-{tag}-{g}.log"
        gens.append(
            await Child.start(f"generator {g}", "benchmarks.generator", args, log, stdin=True)
        )
    async with asyncio.timeout(60):
        for gen in gens:
            await gen.first_line()
    return gens


class Bound:
    """Keeps flat-out generators at most `limit` fixes ahead of their consumer: every
    `every` seconds each is granted its share of (consumed + limit) as a total number of
    messages (`--credit`). A saturation run so keeps the consumer fully loaded without
    overflowing the broker's queue for it (max_queued_messages), and without the
    generator burning CPU the consumer needs on messages nobody can take yet."""

    def __init__(
        self,
        gens: list[Child],
        consumed: Callable[[], Awaitable[float]],
        batch: int,
        limit: int,
        every: float,
    ) -> None:
        self.gens, self.consumed, self.batch = gens, consumed, batch
        self.limit, self.every = limit, every

    async def run(self) -> None:
        while True:
            allowed = (await self.consumed() + self.limit) / self.batch / len(self.gens)
            for g in self.gens:
                g.send(f"{int(allowed)}\n")
            await asyncio.sleep(self.every)


@contextlib.asynccontextmanager
async def bounded(bound: Bound | None) -> AsyncIterator[None]:
    task = asyncio.create_task(bound.run()) if bound else None
    try:
        yield
    finally:
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def finish(children: list[Child]) -> list[dict[str, Any]]:
    """Stop the children (a generator then drains its acks) and return their last lines."""
    for c in children:
        c.stop()
    return [await c.finish(FINISH_S) for c in children]


def rate(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """Summed rate of counters sampled (t, value) by each process itself."""
    return sum((v1 - v0) / (t1 - t0) for (t0, v0), (t1, v1) in zip(before, after, strict=True))


def read(children: list[Child], key: str) -> list[tuple[float, float]]:
    return [(c.latest["t"], float(c.latest[key])) for c in children]
