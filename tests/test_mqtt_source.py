"""Ingest's broker side holds a bounded number of messages it has not started on: the rest
of a backlog waits in the broker (where it is queued and persisted), not in the service's
memory. A private Mosquitto with fencewatch's config."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import paho.mqtt.client as mqtt

from ingest.mqtt import Inbound, MqttSource

BOUND = 100
SENT = 1000
# A topic of its own: the broker is shared with tests whose services subscribe em/+/loc.
TOPIC = "test-source/T000001/loc"
FILTERS = {"test-source/+/loc"}


async def _until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(15):
        while not condition():  # noqa: ASYNC110 (paho's thread fills the inbox)
            await asyncio.sleep(0.05)
    assert condition(), what


def _publish(mqtt_broker: tuple[str, int], count: int) -> None:
    tag = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-source-tag")
    tag.connect(*mqtt_broker)
    tag.loop_start()
    for n in range(count):
        tag.publish(TOPIC, b"%d" % n, qos=1).wait_for_publish(5)
    tag.disconnect()
    tag.loop_stop()


async def _full_source(mqtt_broker: tuple[str, int], mqtt_url: str, sent: int) -> MqttSource:
    """A source whose inbox filled up from `sent` messages (it takes none itself)."""
    source = MqttSource(mqtt_url, f"test-source-{sent}", FILTERS, max_inbox=BOUND)
    source.start()
    await _until(lambda: source.connected, "not subscribed")
    await asyncio.to_thread(_publish, mqtt_broker, sent)
    await _until(lambda: source.backlog == BOUND, "the inbox did not fill")
    return source


async def test_a_backlog_waits_in_the_broker_and_arrives_whole_and_in_order(
    mqtt_broker: tuple[str, int], mqtt_url: str
) -> None:
    source = await _full_source(mqtt_broker, mqtt_url, SENT)
    try:
        await asyncio.sleep(0.5)
        assert source.backlog == BOUND  # and no further

        got: list[Inbound] = []
        while len(got) < SENT:
            batch = await asyncio.wait_for(source.batch(30, 0.01), 15)
            source.ack(batch)
            got += batch
            assert source.backlog <= BOUND
        assert [int(i.payload) for i in got] == list(range(SENT))
    finally:
        source.stop()


async def test_a_full_inbox_does_not_hold_up_stopping(
    mqtt_broker: tuple[str, int], mqtt_url: str
) -> None:
    source = await _full_source(mqtt_broker, mqtt_url, 2 * BOUND)
    await asyncio.wait_for(asyncio.to_thread(source.stop), 10)
