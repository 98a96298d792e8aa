"""The broker side of ingest: a paho-mqtt subscriber with manual acknowledgement, bridged
into asyncio.

QoS 1 on a persistent session (clean session off) means the broker keeps every message
until we acknowledge it, across our restarts. MQTT 3.1.1 rather than 5: paho builds a
properties object for every MQTT 5 message, which costs a third of the receive rate, and
3.1.1's persistent session is all we need. We acknowledge
only after the message's batch is committed, in the order the messages arrived (as MQTT
requires), so a crash at any point loses nothing: the broker simply redelivers.

That holds only while the session is ours. Another client with the session's identity
takes it over (the broker closes our connection), and one connecting with a clean session
deletes it, queue and all; a broker that lost its state on a crash has none either. So a
connection lost over and over makes the source unsteady (`steady`, which /healthz reports),
and a reconnection on which the broker no longer has the session is logged as an error.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time

import msgspec
import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress
from fencewatch.metrics import BROKER_DISCONNECTS, BROKER_SESSIONS_LOST
from ingest.broker_watch import BrokerWatch

log = logging.getLogger("fencewatch.ingest")

# Filters per SUBSCRIBE packet: a shard of a large roster subscribes tens of thousands.
_CHUNK = 1000
# Messages received and not yet taken into a batch, at the most: four full batches.
MAX_INBOX = 20_000
_FULL_WAIT_S = 0.005
# This many connections lost within the window, and the session counts as not steady.
UNSTEADY_DROPS = 3
UNSTEADY_WINDOW_S = 60.0
# A PUBACK: its fixed header (type, remaining length 2) and the message id.
_PUBACK = struct.Struct("!BBH")


class Inbound(msgspec.Struct, frozen=True, gc=False):
    topic: str
    payload: bytes
    mid: int
    qos: int
    at: int  # arrival, epoch ms


class MqttSource:
    def __init__(
        self,
        url: str,
        client_id: str,
        topics: set[str],
        max_inbox: int = MAX_INBOX,
        *,
        connection: str | None = None,
        watch: BrokerWatch | None = None,
    ) -> None:
        """`connection` names this session among the service's connections, for its login
        (MqttAddress.login; without, the URL's user as it is); `watch` is given the
        broker's count of dropped messages."""
        self.address = MqttAddress.parse(url)
        self.max_inbox = max_inbox
        self._stopping = False
        self.client_id = client_id
        self.topics = set(topics)
        self.watch = watch
        self._watch_mid: int | None = None
        self._had_session = False
        self._established = False  # since the last CONNACK that accepted us
        self._drops: collections.deque[float] = collections.deque(maxlen=UNSTEADY_DROPS)
        self.client = self.address.client(
            client_id,
            connection=connection,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.connected = False
        self._pending: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled by paho's thread; the event loop is woken only when it may be waiting,
        # not once per message (a wake-up is a system call and a loop iteration).
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._arrived = asyncio.Event()
        self._signalled = False

    # paho's network thread ------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.error("MQTT broker refused the connection of %s: %s", self.client_id, rc)
            return
        if self._had_session and not getattr(flags, "session_present", True):
            BROKER_SESSIONS_LOST.inc()
            log.error(
                "MQTT session %s: the broker no longer had it on reconnecting; what it had"
                " queued for it is lost (a clean-session client with the same identity, or"
                " a broker that lost its state)",
                self.client_id,
            )
        self._had_session = self._established = True
        self._pending = set(self._subscribe(self.topics))
        self.connected = not self._pending
        if self.watch is not None:
            _, self._watch_mid = client.subscribe(self.watch.topic, qos=0)
        log.info("MQTT %s connected to %s:%s", self.client_id, client.host, client.port)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: list, props: object = None
    ) -> None:
        refused = any(getattr(c, "is_failure", False) for c in codes)
        if mid == self._watch_mid:
            if refused and self.watch is not None:
                self.watch.refused()
            return
        # Only once the broker has the subscriptions does a published fix reach us.
        if refused:
            log.error("MQTT broker refused a subscription: %s", codes)
            return
        self._pending.discard(mid)
        self.connected = not self._pending

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        self.connected = False
        # A connection refused or cut before its CONNACK (a node down, a cluster electing)
        # is not one thrown off.
        established, self._established = self._established, False
        if self._stopping or not established:
            return
        BROKER_DISCONNECTS.inc()
        self._drops.append(time.monotonic())
        if self._thrown_off():
            log.error(
                "MQTT session %s lost its connection %d times within %ds: is another client"
                " using its identity (the same user name or client id)?",
                self.client_id,
                UNSTEADY_DROPS,
                UNSTEADY_WINDOW_S,
            )
        else:
            log.warning("MQTT %s disconnected (%s); paho reconnects", self.client_id, rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.watch is not None and msg.topic == self.watch.topic:
            self.watch.observe(bytes(msg.payload))  # QoS 0: nothing to acknowledge
            return
        # Flow control. Once acknowledgements flow, Mosquitto (2.0.11) sends a session's
        # whole backlog as fast as we read it, max_inflight_messages or not (85,000
        # messages, +140 MB, in a benchmark run). Holding paho's thread here stops it
        # reading the socket, so the rest waits in the broker.
        while len(self._inbox) >= self.max_inbox and not self._stopping:
            time.sleep(_FULL_WAIT_S)
        item = Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, int(time.time() * 1000))
        self._inbox.append(item)
        if not self._signalled:
            self._signalled = True
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._arrived.set)

    # asyncio side ----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()

    def _subscribe(self, topics: set[str]) -> list[int]:
        ordered = sorted(topics)
        mids = []
        for i in range(0, len(ordered), _CHUNK):
            _, mid = self.client.subscribe([(t, 1) for t in ordered[i : i + _CHUNK]])
            if mid is not None:
                mids.append(mid)
        return mids

    def retopic(self, topics: set[str]) -> None:
        """Follow a changed roster: subscribe what is new, drop what is gone."""
        added, gone = topics - self.topics, self.topics - topics
        self.topics = set(topics)
        if added:
            self._subscribe(added)
        self.drop(gone)

    def drop(self, topics: set[str]) -> None:
        ordered = sorted(topics)
        self.topics -= topics
        for i in range(0, len(ordered), _CHUNK):
            self.client.unsubscribe(ordered[i : i + _CHUNK])

    def stop(self) -> None:
        self._stopping = True  # paho's thread may be holding for room in the inbox
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    @property
    def steady(self) -> bool:
        """Connected and subscribed, and not thrown off again and again."""
        return self.connected and not self._thrown_off()

    def _thrown_off(self) -> bool:
        drops = self._drops
        return len(drops) == UNSTEADY_DROPS and time.monotonic() - drops[0] < UNSTEADY_WINDOW_S

    @property
    def backlog(self) -> int:
        return len(self._inbox)

    async def _wait(self) -> None:
        while not self._inbox:
            self._arrived.clear()
            self._signalled = False
            # paho may have appended before it saw the flag down: look again before sleeping.
            if self._inbox:
                return
            await self._arrived.wait()

    async def batch(self, max_items: int, max_wait_s: float) -> list[Inbound]:
        """Wait for a message, then gather more for `max_wait_s` (or until `max_items`).

        The gathering sleeps rather than waiting for each message: the wake-up flag stays
        up meanwhile, so paho's thread does not wake the loop for every message that comes
        (a system call on each side, a loop iteration and a timer: 3,333 a second at
        100,000 tags). What came while it slept is taken at once."""
        await self._wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        items: list[Inbound] = []
        inbox = self._inbox
        while True:
            while inbox and len(items) < max_items:
                items.append(inbox.popleft())
            remaining = deadline - loop.time()
            if len(items) >= max_items or remaining <= 0:
                return items
            await asyncio.sleep(remaining)

    def ack(self, items: list[Inbound]) -> None:
        """Acknowledge a committed batch, in arrival order, as one write. paho's `ack`
        queues each PUBACK as a packet of its own and wakes its network thread for each
        (a system call on both sides, a `send` per 4 bytes): at 100,000 tags that is
        3,333 of each a second. The subscriptions are QoS 1 (`_subscribe`), so every
        acknowledgement is a PUBACK; the broker reads them from the stream one by one."""
        mids = [item.mid for item in items if item.qos > 0]
        if mids:
            packets = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
            # paho 2.x's queue of outgoing packets (what `ack` itself ends in); a packet is
            # written whole, in order, whatever its length.
            self.client._packet_queue(mqtt.PUBACK, packets, 0, 1)
