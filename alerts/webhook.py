"""Outbound webhook (spec 4.3): each alert change POSTed as JSON, signed with HMAC-SHA256.

The body is the outbox payload, `{"event", "alert", "delivery_id"}`, encoded once; the
signature covers exactly those bytes, so a receiver checks it against the raw body before
parsing. Failures are raised for alerts.outbox to retry.
"""

from __future__ import annotations

import msgspec

from alerts.outbox import OutboxMessage
from alerts.signed import SIGNATURE_HEADER, DeliveryError, SignedPost, signature

CHANNEL = "webhook"
__all__ = ["CHANNEL", "SIGNATURE_HEADER", "DeliveryError", "WebhookSender", "signature"]


class WebhookSender:
    """Sends the `webhook` channel of the outbox to FENCEWATCH_WEBHOOK_URL."""

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        self._post = SignedPost(url, secret, "FENCEWATCH_WEBHOOK", timeout=timeout)

    async def send(self, message: OutboxMessage) -> None:
        await self._post.post(msgspec.json.encode(message.payload), self._post.url)

    async def aclose(self) -> None:
        await self._post.aclose()
