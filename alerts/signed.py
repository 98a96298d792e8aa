"""One signed JSON POST: the scheme the outbound webhook and the SMS gateway share, so one
verifier on the receiving side serves both. The HMAC-SHA256 covers exactly the bytes sent;
any 2xx is delivery, anything else (or no answer) is raised for the outbox to retry."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

import httpx

from fencewatch.config import ConfigError

SIGNATURE_HEADER = "X-Fencewatch-Signature"


class DeliveryError(Exception):
    """The receiver answered, but not with a 2xx."""


def signature(body: bytes, secret: str) -> str:
    """The `X-Fencewatch-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class SignedPost:
    """POSTs signed JSON bodies to `url`; `setting` names the env settings (for errors)."""

    def __init__(self, url: str, secret: str, setting: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{setting}_URL must be an http(s) URL, got {url!r}")
        if not secret:
            raise ConfigError(
                f"{setting}_SECRET must be set with {setting}_URL: "
                "the receiver checks the signature of every request"
            )
        self.url = url
        self._secret = secret
        # No answer within the timeout counts as a failure and is retried.
        self._client = httpx.AsyncClient(timeout=timeout)

    async def post(self, body: bytes, receiver: str) -> None:
        response = await self._client.post(
            self.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(body, self._secret),
            },
        )
        if not response.is_success:
            raise DeliveryError(f"{receiver} answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
