"""Device downlink (spec 4.1): commands to `em/<device>/cmd`, and their acknowledgements.

    {"v":1,"id":"<uuid>","type":"vibrate|message|return_now|set_interval","text":"..",
     "interval_s":..}

plus one type the spec's list does not have, `locate` (立即定位, alerts.locate): report a
fix now, then carry on as before. Firmware ignores a type it does not know, as it ignores
anything it cannot parse, so a tag without it is merely not asked.

A command is a `device_commands` row plus an outbox row on the `downlink` channel, written
in one transaction (`queue_command`). `DownlinkSender` publishes it with QoS 1; the broker's
PUBACK is recorded as delivery to the broker (`broker_acked_at`). The device's own
acknowledgement is an addition the spec allows: it publishes

    {"v":1,"id":"<command id>","type":"ack"}

on `em/<device>/cmd/ack`, and ingest hands that to `record_command_ack`
(`device_acked_at`, and a 'notified' step in the alert's timeline).

A publish whose PUBACK does not come is retried by the outbox with the same command id, so
a device may see a command twice and must deduplicate by `id`.

OwnTracks phones do not speak spec 4.1 downlink: they take the app's own `cmd` messages on
`owntracks/<user>/<device>/cmd` (owntracks.org/booklet/tech/json, `_type=cmd`), of which
fencewatch sends two, recorded as `report_location` and `set_monitoring`
(`queue_owntracks_command`). They carry no id and the app sends no acknowledgement; both
are harmless to repeat.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
import paho.mqtt.client as mqtt

from alerts.outbox import OutboxMessage, enqueue
from alerts.record import append_event
from fencewatch.config import MqttAddress
from ingest import topics
from storage.db import Conn

log = logging.getLogger(__name__)

CHANNEL = "downlink"
COMMANDS = ("vibrate", "message", "return_now", "set_interval", "locate")
OWNTRACKS_COMMANDS = ("report_location", "set_monitoring")
# The OwnTracks `monitoring` modes (booklet tech/json, `_type=configuration`).
SIGNIFICANT, MOVE = 1, 2
CONNECTION = "cmd"  # the sender's login among the service's connections (MqttAddress.login)


class CommandAckError(ValueError):
    """An acknowledgement that is not spec-shaped (ingest may record it as rejected)."""


class _Command(msgspec.Struct, frozen=True):
    """A `device_commands` row as given: what was asked of which device, by whom."""

    device: str
    type: str
    issued_by: str
    supervisee: str | None
    alert_id: int | None = None
    text: str | None = None
    interval_s: int | None = None
    monitoring: int | None = None


async def _record(conn: Conn, c: _Command) -> str:
    """Store the command; returns its new id."""
    command_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO device_commands (id, device_id, supervisee_id, alert_id, type, text,"
        " interval_s, monitoring, issued_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        uuid.UUID(command_id),
        c.device,
        c.supervisee,
        c.alert_id,
        c.type,
        c.text,
        c.interval_s,
        c.monitoring,
        c.issued_by,
    )
    return command_id


async def _enqueue(conn: Conn, device: str, payload: dict[str, Any]) -> None:
    # One stream per device: its commands go out in the order they were given.
    await enqueue(
        conn,
        CHANNEL,
        {"kind": "command", "device": device, **payload},
        recipient=device,
    )


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
    command_id = await _record(
        conn, _Command(device, command, issued_by, supervisee, alert_id, text, interval_s)
    )
    wire: dict[str, Any] = {"v": 1, "id": command_id, "type": command}
    if text is not None:
        wire["text"] = text
    if interval_s is not None:
        wire["interval_s"] = interval_s
    await _enqueue(conn, device, {"command": wire, "alert_id": alert_id, "supervisee": supervisee})
    return wire


async def queue_owntracks_command(
    conn: Conn,
    device: str,
    user_device: str,
    command: str,
    *,
    issued_by: str,
    monitoring: int | None = None,
    interval_s: int | None = None,
    supervisee: str | None = None,
    alert_id: int | None = None,
) -> str:
    """Record an OwnTracks command to the phone `device` ("<user>/<device>" = `user_device`)
    and queue it, in the caller's transaction: `report_location`, or `set_monitoring` to
    `monitoring` (with `interval_s` as move mode's seconds between fixes). Returns the
    command's id (the record's: the OwnTracks message carries none)."""
    if command not in OWNTRACKS_COMMANDS:
        raise ValueError(
            f"OwnTracks command must be one of {', '.join(OWNTRACKS_COMMANDS)}, got {command!r}"
        )
    if command == "set_monitoring" and monitoring not in (SIGNIFICANT, MOVE):
        raise ValueError(f"set_monitoring needs monitoring {SIGNIFICANT} or {MOVE}")
    command_id = await _record(
        conn,
        _Command(
            device,
            command,
            issued_by,
            supervisee,
            alert_id,
            interval_s=interval_s,
            monitoring=monitoring,
        ),
    )
    wire: dict[str, Any]
    if command == "report_location":
        wire = {"_type": "cmd", "action": "reportLocation"}
    else:
        configuration: dict[str, Any] = {"_type": "configuration", "monitoring": monitoring}
        if interval_s is not None:
            configuration["moveModeLocatorInterval"] = interval_s
        wire = {"_type": "cmd", "action": "setConfiguration", "configuration": configuration}
    await _enqueue(
        conn,
        device,
        {
            # `command` is the record (what deliveries are filed under); `wire` is sent.
            "command": {"v": 1, "id": command_id, "type": command},
            "wire": wire,
            "topic": topics.owntracks(user_device, topics.CMD),
            "alert_id": alert_id,
            "supervisee": supervisee,
        },
    )
    return command_id


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
        await append_event(
            conn,
            row["alert_id"],
            f"device:{device}",
            "notified",
            {
                "channel": CHANNEL,
                "recipient": device,
                "outcome": "device_acknowledged",
                "command": str(command_id),
                "command_type": row["type"],
            },
        )


class DownlinkSender:
    """Publishes the `downlink` channel of the outbox to the broker with QoS 1 and
    waits for the PUBACK."""

    name = CHANNEL

    def __init__(self, url: str, client_id: str, *, timeout: float = 10.0) -> None:
        self.address = MqttAddress.parse(url)
        self.timeout = timeout
        # MQTT 3.1.1, which every broker fencewatch runs on speaks (NATS has no MQTT 5).
        self.client = self.address.client(client_id, connection=CONNECTION, protocol=mqtt.MQTTv311)
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
        p = message.payload
        body = msgspec.json.encode(p.get("wire", p["command"]))
        info = self.client.publish(
            p.get("topic") or topics.tag(message.recipient, topics.CMD), body, qos=1
        )
        await asyncio.to_thread(info.wait_for_publish, self.timeout)
        if not info.is_published():
            raise TimeoutError(f"downlink: no PUBACK within {self.timeout:g}s")
        return "broker_acked"

    async def aclose(self) -> None:
        self.stop()
