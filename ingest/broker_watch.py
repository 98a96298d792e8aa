"""The broker's own count of messages it dropped.

Mosquitto drops what it would queue for a session beyond `max_queued_messages`, and the
devices have been acknowledged already: the one loss fencewatch cannot prevent once
ingest has been away too long (docs/scaling.md, "How long the broker can wait"). So it
must at least be seen. Mosquitto publishes the count on $SYS every `sys_interval`
(10 s by default); it becomes the gauge `fencewatch_broker_dropped_messages`, and each
rise is logged as an error. Brokers without this $SYS topic leave the gauge at 0.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress
from fencewatch.metrics import BROKER_DROPPED

log = logging.getLogger("fencewatch.ingest")

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"


class BrokerWatch:
    def __init__(self, url: str, client_id: str) -> None:
        self.address = MqttAddress.parse(url)
        self.dropped: int | None = None  # the broker's count when last told
        self.client = self.address.client(client_id, max_delay=30, protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect_async(self.address.host, self.address.port, keepalive=60)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # paho's network thread ------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        if not getattr(rc, "is_failure", False):
            client.subscribe(DROPPED_TOPIC, qos=0)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: list, props: object = None
    ) -> None:
        if any(getattr(c, "is_failure", False) for c in codes):
            log.warning(
                "the broker refused %s: messages it drops will go unnoticed (allow the"
                " service's MQTT user to read it)",
                DROPPED_TOPIC,
            )

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            dropped = int(msg.payload)
        except ValueError:
            log.warning("%s: not a count: %r", DROPPED_TOPIC, bytes(msg.payload[:40]))
            return
        # The count restarts with the broker: a fall is a restart, not a recovery.
        if self.dropped is not None and dropped > self.dropped:
            log.error(
                "the MQTT broker dropped %d messages (its queue for an offline session was"
                " full): they were acknowledged to the devices and are lost",
                dropped - self.dropped,
            )
        elif self.dropped is None and dropped:
            log.error("the MQTT broker has dropped %d messages since it started", dropped)
        self.dropped = dropped
        BROKER_DROPPED.set(dropped)
