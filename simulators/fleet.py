"""A fleet of simulated devices publishing to an MQTT broker in real time.

    python -m simulators.fleet --mqtt mqtt://127.0.0.1:1883 --tags 36 --interval 5

runs the 丽水 demo fleet (simulators.demo) until interrupted. In-process, `run_fleet` is a
coroutine: the service's `demo` mode starts it as a task and sets the `stop` event to end
it. MQTT goes through one shared paho client (thread-based network loop, per-device topics
`em/<device>/loc|evt` and `owntracks/<user>/<device>`, QoS 1); the asyncio side only paces
the devices and calls `publish`, which paho makes thread-safe.

Backpressure: paho keeps every unacknowledged QoS 1 message and runs out of message ids at
65,535. The fleet caps its unacknowledged messages well below that; past the cap, or
while disconnected, each device holds its fixes and uploads them as batches later —
exactly what a tag does when its link is down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress
from simulators.device import DevicePlan
from simulators.tag import LiveTag, retime

MAX_UNACKED = 10_000


@dataclass(frozen=True)
class FleetPlan:
    """The devices and their plans, written from `start_ms` in plan time."""

    start_ms: int
    devices: tuple[DevicePlan, ...]


@dataclass
class FleetStats:
    published: int = 0
    acked: int = 0
    held: int = 0  # waiting on the devices for the link
    dropped: int = 0  # fell off a full device buffer


class MqttLink:
    """One paho client shared by the fleet, with a cap on unacknowledged messages."""

    def __init__(self, url: str, client_id: str, max_unacked: int = MAX_UNACKED) -> None:
        address = MqttAddress.parse(url)
        self.max_unacked = max_unacked
        self._unacked: set[int] = set()
        self._early: set[int] = set()  # acknowledged before publish() returned its mid
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.acked = 0
        self.client = address.client(client_id, max_delay=30, clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async(address.host, address.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.acked += 1
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early.add(mid)

    @property
    def unacked(self) -> int:
        with self._lock:
            return len(self._unacked)

    def ready(self) -> bool:
        return self.connected.is_set() and self.unacked < self.max_unacked

    def publish(self, topic: str, payload: bytes) -> bool:
        # Not under our lock: paho calls on_publish holding its own message lock, which
        # publish() takes too. A PUBACK may so beat us to recording the mid: `_early`.
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._unacked.add(info.mid)
        return True

    def close(self, drain_s: float = 5.0) -> None:
        deadline = time.monotonic() + drain_s
        while self.unacked and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_fleet(
    mqtt_url: str,
    roster_plan: FleetPlan,
    stop: asyncio.Event,
    interval_s: float = 30.0,
    speedup: float = 1.0,
    client_id: str | None = None,
    stats: FleetStats | None = None,
    history_s: float = 0.0,
) -> None:
    """Publish `roster_plan`'s devices live, every `interval_s` seconds each, until `stop`
    is set. The plan starts `history_s` ago (see simulators.tag.retime): like tags that were
    out of touch, each first uploads what it recorded since, as batches. What was sent is
    counted into `stats` when given."""
    link = MqttLink(mqtt_url, client_id or f"fencewatch-sim-{uuid.uuid4().hex[:8]}")
    wall_start = _now_ms() - int(history_s * 1000)
    tags = [
        LiveTag(retime(p, roster_plan.start_ms, wall_start, speedup), interval_s)
        for p in roster_plan.devices
    ]
    tick = min(1.0, interval_s / 5)
    stats = stats if stats is not None else FleetStats()
    try:
        while not stop.is_set():
            now = _now_ms()
            for t in tags:
                t.step(now, link)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
    finally:
        await asyncio.to_thread(link.close)
        stats.published = sum(t.sent for t in tags)
        stats.acked = link.acked
        stats.held = sum(len(t.backlog) for t in tags)
        stats.dropped = sum(t.dropped for t in tags)


def main(argv: list[str] | None = None) -> int:
    from simulators.demo import build_demo

    parser = argparse.ArgumentParser(
        prog="python -m simulators.fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker URL")
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
        await run_fleet(args.mqtt, plan, stop, args.interval, args.speedup, stats=stats)

    asyncio.run(go())
    print(
        f"published {stats.published} messages ({stats.acked} acknowledged), "
        f"{stats.held} held, {stats.dropped} dropped",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
