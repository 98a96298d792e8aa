"""Commands to a device about an alert (spec 4.1 downlink) — above all 责令立即返回
(`return_now`) — and the record of everything sent about the alert.

A command is queued in the transaction that records it (alerts.downlink.queue_command) and
published with QoS 1 by the service's notifier; its status follows the broker's PUBACK
(`delivered_to_broker`) and the device's own acknowledgement (`acknowledged_by_device`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts import record, templates
from alerts.downlink import queue_command
from api import audit
from api.auth import AlertWorker, Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import UtcTime
from storage.db import Conn, Row

router = APIRouter(tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CommandType = Literal["vibrate", "message", "return_now", "set_interval"]


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: CommandType = Field("return_now", description="return_now = 责令立即返回")
    text: str | None = Field(
        None, max_length=200, description="shown on the device; return_now has a default"
    )
    interval_s: int | None = Field(
        None, ge=5, le=86_400, description="set_interval: seconds between fixes"
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.type == "message" and not (self.text and self.text.strip()):
            raise ValueError("a message needs its text")
        if self.type == "set_interval" and self.interval_s is None:
            raise ValueError("set_interval needs interval_s")
        return self


class Command(BaseModel):
    id: str
    device: str
    alert: int | None
    supervisee: str | None
    type: CommandType | Literal["locate", "report_location"] = Field(
        description="also locate (a tag) and report_location (an OwnTracks phone): 立即定位"
    )
    text: str | None
    interval_s: int | None
    issued_by: str
    created_at: UtcTime
    broker_acked_at: UtcTime | None
    device_acked_at: UtcTime | None
    status: Literal["queued", "delivered_to_broker", "acknowledged_by_device"]


class CommandList(BaseModel):
    items: list[Command]


class Delivery(BaseModel):
    at: UtcTime
    channel: str = Field(description="sms, email, webhook or downlink")
    recipient: str
    attempt: int
    outcome: str = Field(
        description="delivered, broker_acked, held (folded into a summary) or failed"
    )
    error: str | None


class DeliveryList(BaseModel):
    items: list[Delivery]


_COMMAND_COLUMNS = (
    "id::text AS id, device_id AS device, alert_id AS alert, supervisee_id AS supervisee,"
    " type, text, interval_s, issued_by, created_at, broker_acked_at, device_acked_at,"
    " CASE WHEN device_acked_at IS NOT NULL THEN 'acknowledged_by_device'"
    "  WHEN broker_acked_at IS NOT NULL THEN 'delivered_to_broker' ELSE 'queued' END AS status"
)


async def _alert(conn: Conn, user: Principal, alert_id: int, *, lock: bool = False) -> Row:
    row = await record.get_alert(conn, user.offices, alert_id, lock=lock)
    if row is None:
        raise not_found(f"alert {alert_id}")
    return row


@router.post("/alerts/{alert_id}/command", response_model=Command, status_code=202)
async def send_command(ctx: Ctx, user: AlertWorker, alert_id: AlertId, body: CommandIn) -> Command:
    """Send a command to the alert's device; 202: queued, delivered as soon as the broker
    takes it (retried until then)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        alert = await _alert(conn, user, alert_id, lock=True)
        device = alert["device_id"]
        wearer = await conn.fetchrow(
            "SELECT a.supervisee_id, d.owntracks, d.osmand FROM devices d"
            " LEFT JOIN device_assignments a"
            " ON a.device_id = d.id AND a.until IS NULL WHERE d.id = $1",
            device,
        )
        if wearer is None or wearer["supervisee_id"] != alert["supervisee_id"]:
            raise ApiError(
                409,
                f"device {device!r} is no longer worn by {alert['supervisee_id']!r}"
                "（设备已不再由该社区矫正对象佩戴）",
            )
        if wearer["owntracks"] is not None:
            raise ApiError(409, f"device {device!r} is an OwnTracks phone and takes no commands")
        if wearer["osmand"] is not None:
            raise ApiError(409, f"device {device!r} is a phone on HTTP (OsmAnd): no commands")
        text = body.text or templates.command_default_text(body.type, alert["type"])
        wire = await queue_command(
            conn,
            device,
            body.type,
            issued_by=user.subject,
            text=text,
            interval_s=body.interval_s,
            alert_id=alert_id,
            supervisee=alert["supervisee_id"],
        )
        if body.type == "set_interval":
            # The device's normal interval from now on: what pursuit restores (alerts.pursuit).
            await conn.execute(
                "UPDATE devices SET report_interval_s = $2 WHERE id = $1", device, body.interval_s
            )
        detail: dict[str, Any] = {"command": wire["id"], "type": body.type, "device": device}
        if text:
            detail["text"] = text
        await record.append_event(conn, alert_id, user.subject, "command", detail)
        await audit.record(conn, user, "alert.command", f"alert:{alert_id}", detail)
        row = await conn.fetchrow(
            f"SELECT {_COMMAND_COLUMNS} FROM device_commands WHERE id = $1::uuid", wire["id"]
        )
    return Command.model_validate(dict(row or {}))


@router.get("/alerts/{alert_id}/commands", response_model=CommandList)
async def list_commands(ctx: Ctx, user: User, alert_id: AlertId) -> CommandList:
    async with ctx.pool.acquire() as conn:
        await _alert(conn, user, alert_id)
        rows = await conn.fetch(
            f"SELECT {_COMMAND_COLUMNS} FROM device_commands WHERE alert_id = $1"
            " ORDER BY created_at, id",
            alert_id,
        )
    return CommandList(items=[Command.model_validate(dict(r)) for r in rows])


@router.get("/alerts/{alert_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(ctx: Ctx, user: User, alert_id: AlertId) -> DeliveryList:
    """Every delivery attempt of every message about the alert, failures included."""
    async with ctx.pool.acquire() as conn:
        await _alert(conn, user, alert_id)
        rows = await conn.fetch(
            "SELECT at, channel, recipient, attempt, outcome, error FROM deliveries"
            " WHERE alert_id = $1 ORDER BY id",
            alert_id,
        )
        await audit.record(conn, user, "alert.deliveries", f"alert:{alert_id}")
    return DeliveryList(items=[Delivery.model_validate(dict(r)) for r in rows])
