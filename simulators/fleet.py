"""A fleet of simulated devices publishing to an MQTT broker in real time.

    python -m simulators.fleet --mqtt mqtt://127.0.0.1:1883 --tags 36 --interval 5

runs the 丽水 demo fleet (simulators.demo) until interrupted. In-process, `run_fleet` is a
coroutine: the service's `demo` mode starts it as a task and sets the `stop` event to end
it. MQTT goes through one shared paho client (thread-based network loop, per-device topics
`em/<device>/loc|evt` and `owntracks/<user>/<device>`, QoS 1); the asyncio side only paces
the devices and calls `publish`, which paho makes thread-safe. Traccar Client phones post
over HTTP to the OsmAnd listener instead (simulators.http_link).

Backpressure: paho keeps every unacknowledged QoS 1 message and runs out of message ids at
65,535. The fleet caps its unacknowledged messages well below that; past the cap, or
while disconnected, each device holds its fixes and uploads them as batches later —
exactly what a tag does when its link is down.

The same client takes the service's commands to the fleet's devices (`em/+/cmd`,
`owntracks/+/+/cmd`) and hands each to its device between steps (simulators.tag).

Devices keep the wall clock, or a `DeviceClock` running faster: minutes of reporting, and
of obeying commands, in seconds — for tests over the live broker.
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
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress
from simulators.device import DevicePlan
from simulators.http_link import TraccarPhones
from simulators.tag import LiveTag, retime

if TYPE_CHECKING:
    from simulators.device_links import DeviceLinks

MAX_UNACKED = 10_000
COMMAND_TOPICS = ("em/+/cmd", "owntracks/+/+/cmd")


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
        # (topic, payload) of commands received; appended by paho's thread, taken by the fleet.
        self.commands: deque[tuple[str, bytes]] = deque()
        self.client = address.client(client_id, max_delay=30, clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect_async(address.host, address.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            # A clean session: subscribed afresh on every connect.
            client.subscribe([(topic, 1) for topic in COMMAND_TOPICS])
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

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.commands.append((message.topic, bytes(message.payload)))

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
) -> None:
    """Publish `roster_plan`'s devices live, every `interval_s` seconds each (of `clock`'s
    time: the wall clock unless given), until `stop` is set. The plan starts `history_s`
    ago (see simulators.tag.retime): like tags that were out of touch, each first uploads
    what it recorded since, as batches. What was sent is counted into `stats` when given.
    With `passwords` (device id → password) each device logs in as itself, as on a broker
    with per-device accounts (simulators.device_links); without, one connection with the
    URL's credentials speaks for the whole fleet. Traccar Client phones post to the OsmAnd
    listener at `osmand_url` (simulators.http_link); without one they are left out."""
    clock = clock or DeviceClock()
    device_start = clock.now() - int(history_s * 1000)
    tags = [
        LiveTag(retime(p, roster_plan.start_ms, device_start, speedup), interval_s)
        for p in roster_plan.devices
        if p.osmand is None or osmand_url is not None
    ]
    phones = TraccarPhones(osmand_url, tags) if osmand_url is not None else None
    link: MqttLink | DeviceLinks
    if passwords is not None:
        from simulators.device_links import DeviceLinks  # which builds on MqttLink

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
        stats.published = sum(t.sent for t in tags)
        stats.acked = link.acked + (phones.acked if phones is not None else 0)
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
    parser.add_argument(
        "--osmand",
        default="http://127.0.0.1:5055/",
        help="where Traccar Client phones post (FENCEWATCH_OSMAND); '' leaves them out",
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
        )

    asyncio.run(go())
    print(
        f"published {stats.published} messages ({stats.acked} acknowledged), "
        f"{stats.held} held, {stats.dropped} dropped",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
