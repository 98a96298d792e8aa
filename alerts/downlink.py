"""Device downlink (spec 4.1): commands to `em/<device>/cmd`, and their acknowledgements.

    {"v":1,"id":"<uuid>","type":"vibrate|message|return_now|set_interval","text":"..",
     "interval_s":..}

A command is a `device_commands` row plus an outbox row on the `downlink` channel, written
in one transaction (`queue_command`). `DownlinkSender` publishes it with QoS 1; the broker's
PUBACK is recorded as delivery to the broker (`broker_acked_at`). The device's own
acknowledgement is an addition the spec allows: it publishes

    {"v":1,"id":"<command id>","type":"ack"}

on `em/<device>/cmd/ack`, and ingest hands that to `record_command_ack`
(`device_acked_at`, and a 'notified' step in the alert's timeline).

A publish whose PUBACK does not come is retried by the outbox with the same command id, so
a device may see a command twice and must deduplicate by `id`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any, cast

import asyncpg
import msgspec
import paho.mqtt.client as mqtt

from alerts.outbox import OutboxMessage, enqueue
from fencewatch.config import MqttAddress
from storage.db import Conn

log = logging.getLogger(__name__)

CHANNEL = "downlink"
COMMANDS = ("vibrate", "message", "return_now", "set_interval")
ACK_TOPIC = "em/+/cmd/ack"  # for ingest to subscribe to


def command_topic(device: str) -> str:
    return f"em/{device}/cmd"


class CommandAckError(ValueError):
    """An acknowledgement that is not spec-shaped (ingest may record it as rejected)."""


async def queue_command(
    conn: Conn,
    device: str,
    command: str,
    *,
    issued_by: str,
    text: str | None = None,
    interval_s: int | None = None,
    alert_id: int | None = None,
    supervisee: str | None = None,
) -> dict[str, Any]:
    """Record a command and queue it for the device, in the caller's transaction.
    Returns the command as sent on the wire."""
    if command not in COMMANDS:
        raise ValueError(f"command type must be one of {', '.join(COMMANDS)}, got {command!r}")
    command_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO device_commands (id, device_id, supervisee_id, alert_id, type, text,"
        " interval_s, issued_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        uuid.UUID(command_id),
        device,
        supervisee,
        alert_id,
        command,
        text,
        interval_s,
        issued_by,
    )
    wire: dict[str, Any] = {"v": 1, "id": command_id, "type": command}
    if text is not None:
        wire["text"] = text
    if interval_s is not None:
        wire["interval_s"] = interval_s
    payload = {
        "kind": "command",
        "command": wire,
        "alert_id": alert_id,
        "supervisee": supervisee,
        "device": device,
    }
    # One stream per device: its commands go out in the order they were given.
    await enqueue(cast(asyncpg.Connection, conn), CHANNEL, payload, recipient=device)
    return wire


def _decode_ack(payload: bytes | str | Mapping[str, Any]) -> uuid.UUID:
    try:
        body = dict(payload) if isinstance(payload, Mapping) else msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise CommandAckError(f"ack: not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("v") != 1 or body.get("type") != "ack":
        raise CommandAckError('ack: expected {"v":1,"id":"<command id>","type":"ack"}')
    try:
        return uuid.UUID(str(body.get("id")))
    except ValueError:
        raise CommandAckError(f"ack: id is not a command id: {body.get('id')!r}") from None


async def record_command_ack(
    conn: Conn, device: str, payload: bytes | str | Mapping[str, Any]
) -> None:
    """Record the device's acknowledgement of a command (`em/<device>/cmd/ack`).

    Idempotent (a QoS 1 redelivery records nothing new); an ack for a command this device
    was never sent is ignored; a malformed one raises CommandAckError.
    """
    command_id = _decode_ack(payload)
    row = await conn.fetchrow(
        "UPDATE device_commands SET device_acked_at = now()"
        " WHERE id = $1 AND device_id = $2 AND device_acked_at IS NULL"
        " RETURNING alert_id, type",
        command_id,
        device,
    )
    if row is None:
        return
    if row["alert_id"] is not None:
        await conn.execute(
            "INSERT INTO alert_events (alert_id, actor, action, detail)"
            " VALUES ($1, $2, 'notified', $3::text::jsonb)",
            row["alert_id"],
            f"device:{device}",
            msgspec.json.encode(
                {
                    "channel": CHANNEL,
                    "recipient": device,
                    "outcome": "device_acknowledged",
                    "command": str(command_id),
                    "command_type": row["type"],
                }
            ).decode(),
        )


class DownlinkSender:
    """Publishes the `downlink` channel of the outbox to the broker with QoS 1 and
    waits for the PUBACK."""

    name = CHANNEL

    def __init__(self, url: str, client_id: str, *, timeout: float = 10.0) -> None:
        self.address = MqttAddress.parse(url)
        self.timeout = timeout
        self.client = self.address.client(client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.connected = False
        self._started = False

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        self.connected = not getattr(rc, "is_failure", False)
        if not self.connected:
            log.error("downlink: the broker refused the connection: %s", rc)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        self.connected = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.client.connect_async(self.address.host, self.address.port, keepalive=30)
            self.client.loop_start()

    def stop(self) -> None:
        if self._started:
            self._started = False
            self.client.disconnect()
            self.client.loop_stop()
            self.connected = False

    async def deliver(self, message: OutboxMessage) -> str:
        self.start()
        if not self.connected:
            # Not handed to paho: it would keep it for a later reconnect, and the outbox
            # retries anyway.
            raise ConnectionError("downlink: not connected to the broker")
        body = msgspec.json.encode(message.payload["command"])
        info = self.client.publish(command_topic(message.recipient), body, qos=1)
        await asyncio.to_thread(info.wait_for_publish, self.timeout)
        if not info.is_published():
            raise TimeoutError(f"downlink: no PUBACK within {self.timeout:g}s")
        return "broker_acked"

    async def aclose(self) -> None:
        self.stop()
