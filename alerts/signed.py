"""One signed JSON POST: the scheme the outbound webhook and the SMS gateway share, so one
verifier on the receiving side serves both. Any 2xx is delivery, anything else (or no
answer) is raised for the outbox to retry.

Two signatures, both HMAC-SHA256 with the shared secret:
- `X-Fencewatch-Signature: sha256=<hex>` over exactly the body (spec 4.3, unchanged);
- `X-Fencewatch-Signature-V2: t=<unix seconds>,sha256=<hex>` over `<t>.<body>`, with `t`
  also in `X-Fencewatch-Timestamp`: signed at each attempt, so a receiver that checks it
  (`verify`) refuses a recorded request replayed more than REPLAY_WINDOW_S later, and
  deduplicates by `delivery_id` within the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from fencewatch.config import ConfigError

SIGNATURE_HEADER = "X-Fencewatch-Signature"
SIGNATURE_V2_HEADER = "X-Fencewatch-Signature-V2"
TIMESTAMP_HEADER = "X-Fencewatch-Timestamp"
# How far a V2 timestamp may be from the receiver's clock (both ways: clocks drift).
REPLAY_WINDOW_S = 300


class DeliveryError(Exception):
    """The receiver answered, but not with a 2xx."""


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature(body: bytes, secret: str) -> str:
    """The `X-Fencewatch-Signature` value for `body`."""
    return "sha256=" + _hmac(secret, body)


def signature_v2(body: bytes, secret: str, timestamp: int) -> str:
    """The `X-Fencewatch-Signature-V2` value for `body` sent at `timestamp`."""
    return f"t={timestamp},sha256={_hmac(secret, b'%d.' % timestamp + body)}"


def signed_headers(body: bytes, secret: str, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        SIGNATURE_HEADER: signature(body, secret),
        SIGNATURE_V2_HEADER: signature_v2(body, secret, timestamp),
        TIMESTAMP_HEADER: str(timestamp),
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    now: float | None = None,
    window_s: int = REPLAY_WINDOW_S,
) -> bool:
    """What a receiver should do: the V2 signature matches the raw body and its timestamp
    lies within `window_s` of now. `headers` as the receiving framework gives them
    (case-insensitive)."""
    fields = dict(
        part.split("=", 1)
        for part in headers.get(SIGNATURE_V2_HEADER, "").split(",")
        if "=" in part
    )
    stamp = fields.get("t", "")
    if not stamp.isdigit() or abs((time.time() if now is None else now) - int(stamp)) > window_s:
        return False
    return hmac.compare_digest(
        signature_v2(body, secret, int(stamp)), f"t={stamp},sha256={fields.get('sha256', '')}"
    )


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
        # Imported here: an ingest worker, which records alerts (alerts.record names the
        # webhook channel) but never delivers one, does without httpx and what it loads.
        import httpx

        # No answer within the timeout counts as a failure and is retried.
        self._client = httpx.AsyncClient(timeout=timeout)

    async def post(self, body: bytes, receiver: str) -> None:
        response = await self._client.post(
            self.url,
            content=body,
            headers={"Content-Type": "application/json", **signed_headers(body, self._secret)},
        )
        if not response.is_success:
            raise DeliveryError(f"{receiver} answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
