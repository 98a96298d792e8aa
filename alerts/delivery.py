"""The one small notifier interface, and the record of every delivery attempt.

A channel (`Channel`: SMS, e-mail, webhook, device downlink) only knows how to deliver
one outbox message and names the outcome (`delivered`, or `broker_acked` for a QoS 1
publish). `Recorded` makes a channel an outbox `Sender`: it applies storm control for
channels to people (alerts.ratelimit), and writes each attempt to `deliveries` against
the alert — failures too — plus a 'notified' step in the alert's timeline when a message
got through (or was held for a summary). Recording never turns a delivered message into
a failed one: if the database cannot take the record, that is logged, not retried, since a
retry would send the message twice.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

import asyncpg

from alerts.outbox import OutboxMessage
from alerts.ratelimit import Throttle
from alerts.record import append_event
from alerts.webhook import CHANNEL as WEBHOOK
from alerts.webhook import WebhookSender
from storage.db import FAILED as DB_FAILED

log = logging.getLogger(__name__)


class Channel(Protocol):
    name: str

    async def deliver(self, message: OutboxMessage) -> str:
        """Deliver `message` and name the outcome, or raise (retried later)."""

    async def aclose(self) -> None: ...


def alert_of(message: OutboxMessage) -> int | None:
    """The alert a message is about: our channels say `alert_id`, webhooks carry it."""
    p = message.payload
    if isinstance(p.get("alert_id"), int):
        return int(p["alert_id"])
    alert = p.get("alert")
    if isinstance(alert, dict) and isinstance(alert.get("id"), int):
        return int(alert["id"])
    return None


class Recorded:
    """An outbox Sender for `channel`, recording each attempt."""

    def __init__(
        self, pool: asyncpg.Pool, channel: Channel, throttle: Throttle | None = None
    ) -> None:
        self.pool = pool
        self.channel = channel
        self.throttle = throttle

    async def send(self, message: OutboxMessage) -> None:
        outcome, error = "failed", None
        try:
            held = await self.throttle.verdict(message) if self.throttle else None
            if held is not None:
                assert self.throttle is not None
                await self.throttle.hold(self.pool, message, held)
                outcome = "held"
                error = held
            else:
                outcome = await self.channel.deliver(message)
                if self.throttle is not None:
                    await self.throttle.sent(message)
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await self._record(message, outcome, error)

    async def _record(self, message: OutboxMessage, outcome: str, error: str | None) -> None:
        alert = alert_of(message)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO deliveries (outbox_id, alert_id, channel, recipient, attempt,"
                    " outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    message.id,
                    alert,
                    message.channel,
                    message.recipient,
                    message.attempts,
                    outcome,
                    error,
                )
                if outcome == "failed":
                    return
                command = message.payload.get("command")
                if outcome == "broker_acked" and isinstance(command, dict):
                    await conn.execute(
                        "UPDATE device_commands SET broker_acked_at = now()"
                        " WHERE id = $1 AND broker_acked_at IS NULL",
                        uuid.UUID(command["id"]),
                    )
                if alert is not None:
                    detail: dict[str, Any] = {
                        "channel": message.channel,
                        # A protected person's number stays off the alert's timeline.
                        "recipient": "protected person"
                        if message.payload.get("kind") == "warning"
                        else message.recipient,
                        "outcome": outcome,
                        "attempt": message.attempts,
                        "delivery_id": message.payload.get("delivery_id"),
                    }
                    for key in ("kind", "event", "level", "to"):
                        if message.payload.get(key) is not None:
                            detail[key] = message.payload[key]
                    if error:
                        detail["reason"] = error
                    if isinstance(command, dict):
                        detail["command"] = command.get("id")
                        detail["command_type"] = command.get("type")
                    await append_event(conn, alert, "notifier", "notified", detail)
        except DB_FAILED as exc:
            log.warning(
                "could not record %s #%d to %r (%s): %s",
                message.channel,
                message.id,
                message.recipient,
                outcome,
                exc,
            )

    async def aclose(self) -> None:
        await self.channel.aclose()


class WebhookChannel:
    """alerts.webhook's sender as a channel."""

    name = WEBHOOK

    def __init__(self, sender: WebhookSender) -> None:
        self.sender = sender

    async def deliver(self, message: OutboxMessage) -> str:
        await self.sender.send(message)
        return "delivered"

    async def aclose(self) -> None:
        await self.sender.aclose()
