"""Messages the broker drops (a full queue for an offline session) are the one loss the
service cannot prevent: it must show them — the gauge `fencewatch_broker_dropped_messages`
and an error in the log, heard over an ingest session (ingest.mqtt.MqttSource). A private
Mosquitto with fencewatch's config, open to anonymous clients, its queue limit lowered to
50 so that a test can fill it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import REGISTRY

from fencewatch.embedded import (
    ANONYMOUS_FOR_TESTS,
    free_port,
    mosquitto_binary,
    mosquitto_config,
    wait_for_port,
)
from ingest.broker_watch import BrokerWatch
from ingest.mqtt import MqttSource

QUEUE_LIMIT = 50
SENT = 200


@pytest.fixture
def small_queue_broker(tmp_path: Path) -> Iterator[int]:
    binary = mosquitto_binary()
    assert binary is not None
    port = free_port()
    conf = mosquitto_config(tmp_path, port, ANONYMOUS_FOR_TESTS)
    # Later lines win; $SYS every second instead of every 10 s.
    conf.write_text(conf.read_text() + f"max_queued_messages {QUEUE_LIMIT}\nsys_interval 1\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(port: int, client_id: str, clean: bool) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


async def test_messages_the_broker_drops_are_counted_and_logged(
    small_queue_broker: int, caplog: pytest.LogCaptureFixture
) -> None:
    watch = BrokerWatch()
    # A shard's session, connected: it hears the broker-wide count.
    source = MqttSource(
        f"mqtt://127.0.0.1:{small_queue_broker}", "test-watching", set(), watch=watch
    )
    source.start()
    try:
        await asyncio.to_thread(_fill_a_queue, small_queue_broker, watch, caplog)
    finally:
        source.stop()


def _fill_a_queue(port: int, watch: BrokerWatch, caplog: pytest.LogCaptureFixture) -> None:
    # An ingest session that subscribed, then went away: the broker queues for it.
    ingest = _client(port, "test-ingest", clean=False)
    ingest.subscribe("em/+/loc", qos=1)
    time.sleep(0.5)
    ingest.disconnect()
    ingest.loop_stop()
    _wait_until(lambda: watch.dropped is not None, "no $SYS report from the broker")
    assert watch.dropped == 0
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]

    tag = _client(port, "test-tag", clean=True)
    for n in range(SENT):
        tag.publish("em/T000001/loc", b'{"n": %d}' % n, qos=1).wait_for_publish(5)
    tag.disconnect()
    tag.loop_stop()

    _wait_until(lambda: watch.dropped == SENT - QUEUE_LIMIT, f"dropped: {watch.dropped}")
    assert REGISTRY.get_sample_value("fencewatch_broker_dropped_messages") == watch.dropped
    # One error per $SYS report that saw the count rise (the 150 may span two).
    said = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert said and all(r.levelname == "ERROR" for r in said)
