"""The broker's own count of messages it dropped.

Mosquitto drops what it would queue for a session beyond `max_queued_messages`, and the
devices have been acknowledged already: the one loss fencewatch cannot prevent once
ingest has been away too long (docs/scaling.md, "How long the broker can wait"). So it
must at least be seen. Mosquitto publishes the count on $SYS every `sys_interval`
(10 s by default); it becomes the gauge `fencewatch_broker_dropped_messages`, and each
rise is logged as an error. Brokers without this $SYS topic leave the gauge at 0.

The count comes over the shards' own sessions (`ingest.mqtt.MqttSource`, QoS 0, which a
broker does not queue for an offline session), not a connection of its own: each
connection needs an identity of its own on the broker (docs/security.md), and a watch per
worker would need one per worker. Every held shard hears the same broker-wide count, so
one watch per process takes them all and reports each rise once.
"""

from __future__ import annotations

import logging
import threading

from fencewatch.metrics import BROKER_DROPPED

log = logging.getLogger("fencewatch.ingest")

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"


class BrokerWatch:
    topic = DROPPED_TOPIC

    def __init__(self) -> None:
        self.dropped: int | None = None  # the broker's count when last told
        self._refusal_logged = False
        self._lock = threading.Lock()  # each shard's paho thread reports here

    def refused(self) -> None:
        if not self._refusal_logged:
            self._refusal_logged = True
            log.warning(
                "the broker refused %s: messages it drops will go unnoticed (allow the"
                " service's MQTT user to read it)",
                DROPPED_TOPIC,
            )

    def observe(self, payload: bytes) -> None:
        try:
            dropped = int(payload)
        except ValueError:
            log.warning("%s: not a count: %r", DROPPED_TOPIC, payload[:40])
            return
        with self._lock:
            # The count restarts with the broker: a fall is a restart, not a recovery.
            if self.dropped is not None and dropped > self.dropped:
                log.error(
                    "the MQTT broker dropped %d messages (its queue for an offline session"
                    " was full): they were acknowledged to the devices and are lost",
                    dropped - self.dropped,
                )
            elif self.dropped is None and dropped:
                log.error("the MQTT broker has dropped %d messages since it started", dropped)
            self.dropped = dropped
            BROKER_DROPPED.set(dropped)
