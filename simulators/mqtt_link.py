"""The fleet's MQTT link: one paho client shared by every simulated device.

Thread-based network loop, per-device topics (`em/<device>/loc|evt`,
`owntracks/<user>/<device>`), QoS 1; the asyncio side only paces the devices and calls
`publish`, which paho makes thread-safe.

Backpressure: paho keeps every unacknowledged QoS 1 message and runs out of message ids at
65,535. A link caps its unacknowledged messages well below that; past the cap, or while
disconnected, each device holds its fixes and uploads them as batches later — exactly what
a tag does when its link is down.

The same client takes the service's commands to the fleet's devices (`em/+/cmd`,
`owntracks/+/+/cmd`) into `commands`, for the fleet to hand each to its device between
steps (simulators.tag).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress
from ingest import topics

MAX_UNACKED = 10_000


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
            client.subscribe([(topic, 1) for topic in topics.COMMANDS])
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
