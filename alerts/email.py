"""E-mail through an SMTP server (FENCEWATCH_SMTP_URL), with aiosmtplib.

    smtp://[user:pass@]host[:port]               plain, upgraded with STARTTLS if offered
    smtp://host:587?starttls=1                   STARTTLS required
    smtps://[user:pass@]host[:465]               implicit TLS

The Message-ID is made from the outbox row's `delivery_id`, so a message resent after a
lost answer can be recognised as the same one.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from alerts.outbox import OutboxMessage
from fencewatch.config import ConfigError

CHANNEL = "email"


class EmailSender:
    name = CHANNEL

    def __init__(self, url: str, sender: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                "FENCEWATCH_SMTP_URL must look like smtp://[user:pass@]host[:port] or"
                f" smtps://..., got {url!r}"
            )
        query = parse_qs(parts.query)
        self._tls = parts.scheme == "smtps"
        self._starttls: bool | None = (
            True if query.get("starttls", ["0"])[0] in ("1", "true", "yes") else None
        )
        self._host = parts.hostname
        self._port = parts.port or (465 if self._tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._sender = sender
        self._timeout = timeout

    def message(self, message: OutboxMessage) -> EmailMessage:
        p = message.payload
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = message.recipient
        mail["Subject"] = p.get("subject") or "社区矫正监管通知"
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = f"<{p['delivery_id']}@fencewatch>"
        mail["X-Fencewatch-Delivery"] = p["delivery_id"]
        mail.set_content(p["text"], charset="utf-8")
        return mail

    async def deliver(self, message: OutboxMessage) -> str:
        await aiosmtplib.send(
            self.message(message),
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._tls,
            start_tls=self._starttls,
            timeout=self._timeout,
        )
        return "delivered"

    async def aclose(self) -> None:
        return None
