"""The ceiling: a bare paho-mqtt QoS 1 subscriber that only counts messages.

It speaks what the service speaks (MQTT 5, `em/+/loc` at QoS 1) but does nothing with a
message, and lets paho acknowledge it as soon as `on_message` returns (auto-ack) — the
cheapest a Python paho subscriber can be, so the rate it reaches bounds what any
single-process paho ingest can do on this machine. Clean start: nothing it leaves queued
in the broker survives it.

stdout is JSON lines: `t` wall time and `received` messages, every tenth of a second.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt

from ingest import topics

REPORT_S = 0.1


class Counter:
    def __init__(self) -> None:
        self.received = 0
        self.subscribed = threading.Event()

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.received += 1

    def on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(topics.tag(topics.ANY, topics.LOC), qos=1)

    def on_subscribe(self, *_: object) -> None:
        self.subscribed.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt", required=True, help="broker host:port")
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    host, _, port = args.mqtt.rpartition(":")
    counter = Counter()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-ceiling-{time.time_ns()}",
        protocol=mqtt.MQTTv5,
    )
    client.on_connect = counter.on_connect
    client.on_subscribe = counter.on_subscribe
    client.on_message = counter.on_message
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.connect(host, int(port), clean_start=True)
    client.loop_start()
    if not counter.subscribed.wait(10):
        raise SystemExit("the broker never confirmed the subscription")
    _emit(t=time.time(), received=counter.received)  # subscribed: start publishing
    deadline = time.monotonic() + args.seconds
    while not stop.wait(REPORT_S) and time.monotonic() < deadline:
        _emit(t=time.time(), received=counter.received)
    client.disconnect()
    client.loop_stop()
    _emit(t=time.time(), received=counter.received, done=True)


def _emit(**line: object) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
