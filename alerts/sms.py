"""SMS through an HTTP SMS gateway (FENCEWATCH_SMS_URL), one signed request per message.

The gateway gets a JSON POST

    {"to": "<phone>", "text": "<Chinese text>", "delivery_id": "<uuid>",
     "kind": "alert|summary|reminder|checkin", "alert_id": <id or null>, "supervisee": "<id>"}

with `X-Fencewatch-Signature: sha256=<hex HMAC-SHA256 of the raw body with
FENCEWATCH_SMS_SECRET>` — the webhook's scheme (alerts.signed), so one verifier serves
both. Any 2xx is delivery; anything else, or no answer, is retried by the outbox, and the
gateway deduplicates by `delivery_id`.
"""

from __future__ import annotations

import msgspec

from alerts.outbox import OutboxMessage
from alerts.signed import SignedPost

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
        self._post = SignedPost(url, secret, "FENCEWATCH_SMS", timeout=timeout)

    async def deliver(self, message: OutboxMessage) -> str:
        await self._post.post(sms_body(message), "SMS gateway")
        return "delivered"

    async def aclose(self) -> None:
        await self._post.aclose()
