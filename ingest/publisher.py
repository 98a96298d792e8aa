"""QoS 1 publishing for the service's listeners that speak for devices (the OsmAnd HTTP
listener, the JT/T 808 gateway): `publish` returns once the broker has the message
(PUBACK), so the listener tells the device "got it" only then.

A listener may also take messages from the broker (the gateway takes its terminals'
commands): `subscriptions` are made again on every connect, and each message is handed to
`on_message` in the asyncio loop. With `persistent` the broker keeps the session, and what
arrives for its subscriptions meanwhile, while the listener is away."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress

log = logging.getLogger(__name__)

MAX_INFLIGHT = 200  # messages published and not yet acknowledged by the broker


class Publisher:
    def __init__(
        self,
        url: str,
        client_id: str,
        connection: str,
        *,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
        max_inflight: int = MAX_INFLIGHT,
        persistent: bool = False,
    ) -> None:
        address = MqttAddress.parse(url)
        # `connection` is the login among the service's connections (MqttAddress.login).
        self.client = address.client(
            client_id, connection=connection, protocol=mqtt.MQTTv311, clean_session=not persistent
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.address = address
        self.connection = connection
        self.subscriptions = tuple(subscriptions)
        self.handler = on_message
        self.connected = False
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        # PUBACKs that came before publish() recorded the message id.
        self._early: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    async def publish(self, topic: str, payload: bytes) -> None:
        if not self.connected:
            raise ConnectionError("not connected to the MQTT broker")
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(info.rc))
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                return
            self._pending[info.mid] = future
        await future

    # paho's network thread

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        self.connected = not getattr(rc, "is_failure", False)
        if not self.connected:
            log.error("%s: the broker refused the connection: %s", self.connection, rc)
        elif self.subscriptions:
            client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        self.connected = False

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object
    ) -> None:
        with self._lock:
            future = self._pending.pop(mid, None)
            if future is None:
                self._early.add(mid)
                return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle, future)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self.handler is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.handler, message.topic, bytes(message.payload))


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():  # its request may have timed out meanwhile
        future.set_result(None)
