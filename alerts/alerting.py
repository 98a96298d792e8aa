"""Everything that gets alerts to people, as one object the service starts:

    Alerting(pool, redis, settings, mqtt_url).run(stop)

runs the escalator (alerts.escalation: first notification, escalation steps, storm
summaries) and an outbox worker with a sender for every configured channel — webhook
(FENCEWATCH_WEBHOOK_URL), SMS (FENCEWATCH_SMS_URL), e-mail (FENCEWATCH_SMTP_URL) and the
device downlink (the MQTT broker) — each recording every attempt (alerts.delivery), SMS
and e-mail under the per-person rate limit (alerts.ratelimit). It returns when `stop` is
set, with its connections closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
from redis.asyncio import Redis

from alerts.clock import Clock, system_clock
from alerts.delivery import Channel, Recorded, WebhookChannel
from alerts.downlink import DownlinkSender
from alerts.email import EmailSender
from alerts.escalation import EscalationPolicy, Escalator
from alerts.outbox import OutboxWorker, Sender
from alerts.ratelimit import Throttle
from alerts.routing import Channels
from alerts.sms import SmsSender
from alerts.webhook import WebhookSender
from fencewatch.config import Settings


class Alerting:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis | None,
        settings: Settings,
        mqtt_url: str | None,
        *,
        clock: Clock = system_clock,
        poll_interval: float = 5.0,
        outbox_options: dict[str, Any] | None = None,
    ) -> None:
        s = settings
        self.pool = pool
        self.channels: dict[str, Channel] = {}
        if s.webhook_url:
            self.channels["webhook"] = WebhookChannel(
                WebhookSender(s.webhook_url, s.webhook_secret)
            )
        if s.sms_url:
            self.channels["sms"] = SmsSender(s.sms_url, s.sms_secret)
        if s.smtp_url:
            self.channels["email"] = EmailSender(s.smtp_url, s.smtp_from)
        self.downlink: DownlinkSender | None = None
        if mqtt_url:
            self.downlink = DownlinkSender(mqtt_url, f"{s.client_id}-cmd-{uuid.uuid4().hex[:8]}")
            self.channels["downlink"] = self.downlink
        self.throttle = Throttle(
            redis, limit=s.notify_limit, window_s=s.notify_window_s, clock=clock
        )
        people = ("sms", "email")
        self.senders: dict[str, Sender] = {
            name: Recorded(pool, channel, self.throttle if name in people else None)
            for name, channel in self.channels.items()
        }
        self.escalator = Escalator(
            pool,
            policy=EscalationPolicy(
                after_s=dict(s.escalate_after_s),
                heightened_factor=s.escalate_heightened_factor,
            ),
            channels=Channels(
                sms="sms" in self.channels,
                email="email" in self.channels,
                downlink="downlink" in self.channels,
            ),
            timezone=s.timezone,
            clock=clock,
            poll_interval=poll_interval,
            pursuit_hold_s=s.pursuit_hold_s,
        )
        self.worker = (
            OutboxWorker(pool, self.senders, **(outbox_options or {})) if self.senders else None
        )

    async def run(self, stop: asyncio.Event) -> None:
        if self.downlink is not None:
            self.downlink.start()
        try:
            # The first part to fail stops the other (and so this task, for the service).
            async with asyncio.TaskGroup() as group:
                group.create_task(self.escalator.run(stop), name="escalation")
                if self.worker is not None:
                    group.create_task(self.worker.run(stop), name="outbox")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.aclose()
