"""A fleet of simulated devices publishing to an MQTT broker in real time.

    python -m simulators.fleet --mqtt mqtt://127.0.0.1:1883 --tags 36 --interval 5

runs the 丽水 demo fleet (simulators.demo) until interrupted. In-process, `run_fleet` is a
coroutine: the service's `demo` mode starts it as a task and sets the `stop` event to end
it. Tags and OwnTracks phones publish over MQTT — one shared connection
(simulators.mqtt_link), or one per device on a broker with per-device accounts
(simulators.device_links) — and Traccar Client phones post over HTTP to the OsmAnd
listener (simulators.http_link), and JT/T 808 wristbands keep a TCP connection to the
gateway (simulators.jt808). Commands the service sends a device reach it between steps
(simulators.tag), or on the wristband's connection.

Devices keep the wall clock, or a `DeviceClock` running faster: minutes of reporting, and
of obeying commands, in seconds — for tests over the live broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import uuid
from dataclasses import dataclass

from simulators.demo import build_demo
from simulators.device import FleetPlan
from simulators.device_links import DeviceLinks
from simulators.http_link import TraccarPhones
from simulators.mqtt_link import MqttLink
from simulators.tag import LiveTag, retime


@dataclass
class FleetStats:
    published: int = 0
    acked: int = 0
    held: int = 0  # waiting on the devices for the link
    dropped: int = 0  # fell off a full device buffer


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DeviceClock:
    """The time a live fleet's devices keep and stamp their fixes with: the wall clock, or
    one running `rate` times faster from `start_ms`. Ingest judges a fix live only while it
    arrives less than Policy.late_after_s (5 min) after its time, and refuses one more than
    10 min ahead of arrival: a fast clock should start a few minutes behind the wall and
    stop before it is 10 minutes ahead."""

    def __init__(self, rate: float = 1.0, start_ms: int | None = None) -> None:
        self.rate = rate
        self._wall_start = _now_ms()
        self._start = self._wall_start if start_ms is None else start_ms

    def now(self) -> int:
        return self._start + int((_now_ms() - self._wall_start) * self.rate)


async def run_fleet(
    mqtt_url: str,
    roster_plan: FleetPlan,
    stop: asyncio.Event,
    interval_s: float = 30.0,
    speedup: float = 1.0,
    client_id: str | None = None,
    stats: FleetStats | None = None,
    history_s: float = 0.0,
    clock: DeviceClock | None = None,
    passwords: dict[str, str] | None = None,
    osmand_url: str | None = None,
    jt808_address: tuple[str, int] | None = None,
) -> None:
    """Publish `roster_plan`'s devices live, every `interval_s` seconds each (of `clock`'s
    time: the wall clock unless given), until `stop` is set. The plan starts `history_s`
    ago (see simulators.tag.retime): like tags that were out of touch, each first uploads
    what it recorded since, as batches. What was sent is counted into `stats` when given.
    With `passwords` (device id → password) each device logs in as itself, as on a broker
    with per-device accounts (simulators.device_links); without, one connection with the
    URL's credentials speaks for the whole fleet. Traccar Client phones post to the OsmAnd
    listener at `osmand_url` (simulators.http_link), and JT/T 808 wristbands connect to
    the gateway at `jt808_address` (host, port); without them those are left out."""
    clock = clock or DeviceClock()
    device_start = clock.now() - int(history_s * 1000)
    tags = [
        LiveTag(retime(p, roster_plan.start_ms, device_start, speedup), interval_s)
        for p in roster_plan.devices
        if (p.osmand is None or osmand_url is not None) and p.jt808 is None
    ]
    wristbands = (
        _wristbands(roster_plan, jt808_address, stop, clock, device_start, speedup, interval_s)
        if jt808_address is not None
        else []
    )
    phones = TraccarPhones(osmand_url, tags) if osmand_url is not None else None
    link: MqttLink | DeviceLinks
    if passwords is not None:
        link = DeviceLinks(mqtt_url, tags, passwords)
    else:
        link = MqttLink(mqtt_url, client_id or f"fencewatch-sim-{uuid.uuid4().hex[:8]}")
    by_topic = {t.command_topic: t for t in tags}
    tick = min(1.0, interval_s / 5) / clock.rate
    stats = stats if stats is not None else FleetStats()
    try:
        while not stop.is_set():
            now = clock.now()
            while link.commands:
                topic, payload = link.commands.popleft()
                if (tag := by_topic.get(topic)) is not None:
                    tag.command(payload, link)
            for t in tags:
                t.step(now, phones.links.get(t.plan.id, link) if phones is not None else link)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
    finally:
        await asyncio.to_thread(link.close)
        if phones is not None:
            await phones.close()
        for task in wristbands:
            task.cancel()
        await asyncio.gather(*wristbands, return_exceptions=True)
        stats.published = sum(t.sent for t in tags)
        stats.acked = link.acked + (phones.acked if phones is not None else 0)
        stats.held = sum(len(t.backlog) for t in tags)
        stats.dropped = sum(t.dropped for t in tags)


def _wristbands(
    plan: FleetPlan,
    address: tuple[str, int],
    stop: asyncio.Event,
    clock: DeviceClock,
    device_start: int,
    speedup: float,
    interval_s: float,
) -> list[asyncio.Task[None]]:
    """A task for each JT/T 808 wristband of the plan, connected to the gateway."""
    from simulators.jt808 import Terminal  # it keeps this module's DeviceClock

    tasks = []
    for p in plan.devices:
        if p.jt808 is not None:
            track = retime(p, plan.start_ms, device_start, speedup).track
            terminal = Terminal(p.jt808, track, interval_s=interval_s, clock=clock)
            tasks.append(asyncio.create_task(terminal.run(*address, stop)))
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker URL")
    parser.add_argument(
        "--osmand",
        default="http://127.0.0.1:5055/",
        help="where Traccar Client phones post (FENCEWATCH_OSMAND); '' leaves them out",
    )
    parser.add_argument(
        "--jt808",
        default="127.0.0.1:6808",
        help="where JT/T 808 wristbands connect (FENCEWATCH_JT808); '' leaves them out",
    )
    parser.add_argument("--tags", type=int, default=36, help="devices (default 36)")
    parser.add_argument("--interval", type=float, default=30.0, help="report interval, s (30)")
    parser.add_argument("--speedup", type=float, default=1.0, help="plan time per wall time (1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0, help="stop after N s (0: never)")
    args = parser.parse_args(argv)
    _, _, plan = build_demo(args.tags, args.seed)

    stats = FleetStats()

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        await run_fleet(
            args.mqtt,
            plan,
            stop,
            args.interval,
            args.speedup,
            stats=stats,
            osmand_url=args.osmand or None,
            jt808_address=_host_port(args.jt808) if args.jt808 else None,
        )

    asyncio.run(go())
    print(
        f"published {stats.published} messages ({stats.acked} acknowledged), "
        f"{stats.held} held, {stats.dropped} dropped",
        file=sys.stderr,
    )
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    sys.exit(main())
