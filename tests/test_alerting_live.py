"""Issue 6 end to end over the real Mosquitto, PostgreSQL and Redis: a tag walks out of
莲都区, and the officer's SMS reaches the (local) gateway, 责令立即返回 reaches the
device's command topic, the device's acknowledgement is recorded, and an operator's
command from the API goes the same way. Waits are bounded; nothing is timed."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt

from alerts.alerting import Alerting
from alerts.downlink import record_command_ack
from api.tokens import create_token
from fencewatch.config import MqttAddress, Settings
from fencewatch.embedded import free_port
from fencewatch.loader import load_scenario
from fencewatch.servers import ServerUrls
from fencewatch.service import Service
from ingest import topics
from storage.db import open_pool
from tests.kit import LIANDU, lishui_collection
from tests.live import WAIT_S, Live, eventually, write_scenario
from tests.test_alerting import OFFICER_PHONE, SEED, SMS_SECRET, SmsGateway
from tests.test_live_ingest import walk_out

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [{"id": "P1", "jurisdiction": [LIANDU], "devices": ["T1"]}],
}


class Subscriber:
    """An MQTT client collecting what arrives on `topic` (QoS 1)."""

    def __init__(self, mqtt_url: str, topic: str) -> None:
        address = MqttAddress.parse(mqtt_url)
        self.loop = asyncio.get_running_loop()
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.subscribed = asyncio.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.loop.call_soon_threadsafe(self.subscribed.set)
        self.client.on_message = lambda _c, _u, m: self.loop.call_soon_threadsafe(
            self.messages.put_nowait, (m.topic, bytes(m.payload))
        )
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    async def next(self) -> tuple[str, dict[str, Any]]:
        topic, body = await asyncio.wait_for(self.messages.get(), 60)
        return topic, msgspec.json.decode(body)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextlib.asynccontextmanager
async def running_with_sms(
    pg_dsn: str, redis_url: str, mqtt_url: str, sms_port: int
) -> AsyncIterator[Live]:
    """tests.live.running, with the SMS gateway configured; and the alerting started here
    unless fencewatch.service runs it itself."""
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await load_scenario(pool, write_scenario(Path(tmp), lishui_collection(), ROSTER))
        token = await create_token(pool, "operator", subject="test operator")
    finally:
        await pool.close()
    port = free_port()
    settings = Settings(
        http_port=port,
        client_id=f"fencewatch-test-{uuid.uuid4().hex[:8]}",
        sms_url=f"http://127.0.0.1:{sms_port}/sms",
        sms_secret=SMS_SECRET,
    )
    service = Service(settings, ServerUrls(pg_dsn, redis_url, mqtt_url, ()))
    task = asyncio.create_task(service.run())
    stop = asyncio.Event()
    own: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(WAIT_S):
            while not (service.ready.is_set() and service.connected):
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        if not any(t.get_name() == "alerting" for t in asyncio.all_tasks()):
            alerting = Alerting(service.pool, service.redis, settings, mqtt_url, poll_interval=0.5)
            own = asyncio.create_task(alerting.run(stop))
        live = Live(service, task, f"http://127.0.0.1:{port}", token, mqtt_url)
        try:
            yield live
        finally:
            live.device.close()
            await live.http.aclose()
    finally:
        stop.set()
        if own is not None:
            await own
        service.stop.set()
        await task


@contextlib.asynccontextmanager
async def ack_listener(live: Live, mqtt_url: str) -> AsyncIterator[None]:
    """Stands in for ingest's subscription to em/+/cmd/ack: hands each ack to
    alerts.downlink.record_command_ack."""
    acks = Subscriber(mqtt_url, topics.tag(topics.ANY, topics.CMD_ACK))
    await asyncio.wait_for(acks.subscribed.wait(), 30)

    async def forward() -> None:
        while True:
            topic, body = await acks.messages.get()
            device = topic.split("/")[1]
            async with live.service.pool.acquire() as conn:
                await record_command_ack(conn, device, body)

    task = asyncio.create_task(forward())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        acks.close()


async def test_a_breach_over_mqtt_reaches_the_officer_and_orders_the_device_back(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    gateway = SmsGateway(free_port())
    async with running_with_sms(pg_dsn, redis_url, mqtt_url, gateway.port) as live:
        pool = live.service.pool
        await pool.execute(SEED)
        await pool.execute(
            "UPDATE supervisees SET name = '张三', office_id = 'S1', officer_id = 'O1'"
            " WHERE id = 'P1'"
        )
        device = Subscriber(mqtt_url, "em/T1/cmd")
        await asyncio.wait_for(device.subscribed.wait(), 30)
        try:
            with gateway.listening():
                async with ack_listener(live, mqtt_url):
                    for fix in walk_out():
                        live.device.publish("em/T1/loc", fix)

                    # The officer's SMS, within a bounded wait.
                    async def sms() -> list[dict[str, Any]]:
                        return gateway.to(OFFICER_PHONE)

                    [message] = await eventually(sms, "no SMS reached the gateway")
                    assert "张三（P1）越界（擅自离开执行地）" in message["text"]
                    assert "执行地：" in message["text"]

                    # 责令立即返回 on the device's command topic (spec 4.1), after pursuit's
                    # set_interval (alerts.pursuit) from the breach's first fix.
                    topic, command = await device.next()
                    while command["type"] == "set_interval":
                        topic, command = await device.next()
                    assert topic == "em/T1/cmd"
                    assert command["v"] == 1 and command["type"] == "return_now"
                    assert "立即返回" in command["text"]
                    uuid.UUID(command["id"])

                    # The device acknowledges it.
                    ack = {"v": 1, "id": command["id"], "type": "ack"}
                    live.device.publish("em/T1/cmd/ack", ack)

                    async def acknowledged() -> Any:
                        return await pool.fetchrow(
                            "SELECT * FROM device_commands WHERE device_acked_at IS NOT NULL"
                        )

                    row = await eventually(acknowledged, "the device's ack was not recorded")
                    assert str(row["id"]) == command["id"] and row["broker_acked_at"] is not None
                    [alert] = await live.alerts(supervisee="P1", type="jurisdiction_exit")
                    assert row["alert_id"] == alert["id"]

                    # An operator sends a message from the API; it goes the same way.
                    sent = await live.http.post(
                        f"/api/v1/alerts/{alert['id']}/command",
                        json={"type": "message", "text": "请立即与司法所联系"},
                    )
                    assert sent.status_code == 202, sent.text
                    assert sent.json()["status"] == "queued"
                    topic, message_cmd = await device.next()
                    assert message_cmd == {
                        "v": 1,
                        "id": sent.json()["id"],
                        "type": "message",
                        "text": "请立即与司法所联系",
                    }

                    async def broker_took_it() -> bool:
                        r = await live.http.get(f"/api/v1/alerts/{alert['id']}/commands")
                        return [c["status"] for c in r.json()["items"]] == [
                            "acknowledged_by_device",
                            "delivered_to_broker",
                        ]

                    await eventually(broker_took_it, "command statuses")
        finally:
            device.close()

        detail = (await live.http.get(f"/api/v1/alerts/{alert['id']}")).json()
        steps = [(e["action"], e["detail"].get("outcome")) for e in detail["timeline"]]
        assert steps[:2] == [("raised", None), ("routed", None)]
        assert ("notified", "delivered") in steps  # the SMS
        assert ("notified", "broker_acked") in steps  # the downlink's PUBACK
        assert ("notified", "device_acknowledged") in steps
        assert ("command", None) in steps
        deliveries = (await live.http.get(f"/api/v1/alerts/{alert['id']}/deliveries")).json()
        assert {(d["channel"], d["outcome"]) for d in deliveries["items"]} >= {
            ("sms", "delivered"),
            ("downlink", "broker_acked"),
        }
