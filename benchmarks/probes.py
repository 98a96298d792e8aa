"""Phases 1 and 2: the generator's own maximum, and the ceiling a bare paho-mqtt QoS 1
subscriber reaches on the same broker with the same generator."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from benchmarks.load import Bound, bounded, finish, rate, read, start_generators
from benchmarks.procs import Child, CpuMeter
from benchmarks.stack import Stack

WARMUP_S = 2.0


async def probe_generator(stack: Stack, opts: argparse.Namespace) -> dict[str, Any]:
    """The generator flat out with no subscriber: the broker acknowledges and discards."""
    gens = await start_generators(stack, opts, 0, WARMUP_S + opts.probe + 5, "max")
    try:
        cpu = CpuMeter(
            {"generator": [g.proc.pid for g in gens], "mosquitto": [stack.mosquitto_pid]}
        )
        await asyncio.sleep(WARMUP_S)
        before = read(gens, "acked")
        cpu.start()
        await asyncio.sleep(opts.probe)
        after = read(gens, "acked")
        cpu_s = cpu.stop()
    finally:
        await finish(gens)
    msgs = rate(before, after)
    return {"msgs_per_s": round(msgs), "fixes_per_s": round(msgs * opts.batch), "cpu_s": cpu_s}


async def probe_ceiling(stack: Stack, opts: argparse.Namespace) -> dict[str, Any]:
    """The generator flat out into a bare paho QoS 1 subscriber (benchmarks.subscriber)."""
    seconds = WARMUP_S + opts.probe + 5
    sub = await Child.start(
        "subscriber",
        "benchmarks.subscriber",
        ["--mqtt", stack.mqtt, "--seconds", str(seconds + 5)],
        stack.run_dir / "subscriber.log",
    )
    async with asyncio.timeout(30):
        await sub.first_line()
    gens = await start_generators(stack, opts, 0, seconds, "ceiling", credit=True)

    async def received() -> float:
        return float(sub.latest["received"] * opts.batch)

    try:
        async with bounded(Bound(gens, received, opts.batch, opts.max_backlog, every=0.1)):
            cpu = CpuMeter(
                {
                    "subscriber": [sub.proc.pid],
                    "generator": [g.proc.pid for g in gens],
                    "mosquitto": [stack.mosquitto_pid],
                }
            )
            await asyncio.sleep(WARMUP_S)
            sub0, gen0, held0 = read([sub], "received"), read(gens, "acked"), read(gens, "held_s")
            cpu.start()
            await asyncio.sleep(opts.probe)
            sub1, gen1, held1 = read([sub], "received"), read(gens, "acked"), read(gens, "held_s")
            cpu_s = cpu.stop()
    finally:
        await finish(gens)
        await finish([sub])
    msgs, offered = rate(sub0, sub1), rate(gen0, gen1)
    held = sum(h for _, h in held1) - sum(h for _, h in held0)
    return {
        "msgs_per_s": round(msgs),
        "fixes_per_s": round(msgs * opts.batch),
        "offered_msgs_per_s": round(offered),
        "generator_held_s": round(held, 1),
        # Never held back and the subscriber took all: the true ceiling is higher.
        "bound_by_generator": held == 0 and msgs >= 0.95 * offered,
        "cpu_s": cpu_s,
    }
