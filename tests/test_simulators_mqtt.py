"""The live fleet publishes valid device messages to a real broker."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as mqtt

from fencewatch.scenario import parse_supervisee
from geofence.model import Roster
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from ingest.decode import decode
from simulators.demo import build_demo
from simulators.fleet import FleetStats, run_fleet
from simulators.mqtt_link import MqttLink

WANTED = 24


async def test_fleet_publishes_valid_messages(mqtt_url: str) -> None:
    zones, roster, plan = build_demo(6)
    rules = RuleSet(
        Roster(roster["timezone"], [parse_supervisee(s) for s in roster["supervisees"]]),
        parse_feature_collection(zones),
    )
    received: list[mqtt.MQTTMessage] = []
    enough = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg)
        if len(received) >= WANTED:
            enough.set()

    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-fleet-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect(host, int(port))
    sub.subscribe([("em/#", 1), ("owntracks/#", 1)])
    sub.loop_start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        stop = asyncio.Event()
        stats = FleetStats()
        fleet = asyncio.create_task(run_fleet(mqtt_url, plan, stop, interval_s=0.5, stats=stats))
        await asyncio.to_thread(enough.wait, 30)
        stop.set()
        await fleet
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert len(received) >= WANTED
    assert stats.published >= WANTED
    devices = set()
    for msg in received:
        decoded = decode(
            msg.topic, msg.payload, int(time.time() * 1000), rules.device_owner, rules.owntracks
        )
        assert decoded.rejections == []
        devices |= {f.device for f in decoded.fixes} | {e.device for e in decoded.events}
    assert devices == {d.id for d in plan.devices}


def test_link_counts_acknowledgements(mqtt_url: str) -> None:
    link = MqttLink(mqtt_url, "test-fleet-link", max_unacked=10)
    try:
        assert link.connected.wait(10)
        assert link.ready()
        for k in range(5):
            assert link.publish("em/T999/evt", b'{"v":1,"seq":%d,"ts":0,"type":"boot"}' % k)
        deadline = time.monotonic() + 10
        while link.acked < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.acked == 5 and link.unacked == 0
    finally:
        link.close()
