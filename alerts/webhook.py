"""Outbound webhook (spec 4.3): each alert change POSTed as JSON, signed with HMAC-SHA256.

The body is the outbox payload, `{"event", "alert", "delivery_id"}`, encoded once; the
signature covers exactly those bytes, so a receiver checks it against the raw body before
parsing. Failures are raised for alerts.outbox to retry.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

import httpx
import msgspec

from alerts.outbox import OutboxMessage
from fencewatch.config import ConfigError

CHANNEL = "webhook"
SIGNATURE_HEADER = "X-Fencewatch-Signature"


class DeliveryError(Exception):
    """The receiver answered, but not with a 2xx."""


def signature(body: bytes, secret: str) -> str:
    """The `X-Fencewatch-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Sends the `webhook` channel of the outbox to FENCEWATCH_WEBHOOK_URL."""

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"FENCEWATCH_WEBHOOK_URL must be an http(s) URL, got {url!r}")
        if not secret:
            raise ConfigError(
                "FENCEWATCH_WEBHOOK_SECRET must be set with FENCEWATCH_WEBHOOK_URL: "
                "receivers need it to check the signature"
            )
        self._url = url
        self._secret = secret
        # No answer within the timeout counts as a failure and is retried.
        self._client = httpx.AsyncClient(timeout=timeout)

    async def send(self, message: OutboxMessage) -> None:
        body = msgspec.json.encode(message.payload)
        response = await self._client.post(
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(body, self._secret),
            },
        )
        if not response.is_success:
            raise DeliveryError(f"{self._url} answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
