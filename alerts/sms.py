"""SMS through an HTTP SMS gateway (FENCEWATCH_SMS_URL), one signed request per message.

The gateway gets a JSON POST

    {"to": "<phone>", "text": "<Chinese text>", "delivery_id": "<uuid>",
     "kind": "alert|summary|reminder", "alert_id": <id or null>, "supervisee": "<id>"}

with `X-Fencewatch-Signature: sha256=<hex HMAC-SHA256 of the raw body with
FENCEWATCH_SMS_SECRET>` — the webhook's scheme (alerts.webhook), so one verifier serves
both. Any 2xx is delivery; anything else, or no answer, is retried by the outbox, and the
gateway deduplicates by `delivery_id`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import msgspec

from alerts.outbox import OutboxMessage
from alerts.webhook import SIGNATURE_HEADER, DeliveryError, signature
from fencewatch.config import ConfigError

CHANNEL = "sms"


def sms_body(message: OutboxMessage) -> bytes:
    p = message.payload
    return msgspec.json.encode(
        {
            "to": message.recipient,
            "text": p["text"],
            "delivery_id": p["delivery_id"],
            "kind": p.get("kind", "alert"),
            "alert_id": p.get("alert_id"),
            "supervisee": p.get("supervisee"),
        }
    )


class SmsSender:
    name = CHANNEL

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"FENCEWATCH_SMS_URL must be an http(s) URL, got {url!r}")
        if not secret:
            raise ConfigError(
                "FENCEWATCH_SMS_SECRET must be set with FENCEWATCH_SMS_URL: the gateway"
                " checks the signature of every request"
            )
        self._url = url
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout)

    async def deliver(self, message: OutboxMessage) -> str:
        body = sms_body(message)
        response = await self._client.post(
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                SIGNATURE_HEADER: signature(body, self._secret),
            },
        )
        if not response.is_success:
            raise DeliveryError(f"SMS gateway answered HTTP {response.status_code}")
        return "delivered"

    async def aclose(self) -> None:
        await self._client.aclose()
