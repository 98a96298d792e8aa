"""OsmAnd over HTTP (spec 4.1b): the listener that Traccar Client phones, and trackers
speaking the OsmAnd protocol, send their positions to (FENCEWATCH_OSMAND).

A request is answered 200 only once what it says is committed, because the phone keeps a
request and sends it again until it gets one; 400 with the reason when it is malformed
(decoded here first: nothing bad reaches the broker); 503 when the commit did not come in
time, so the phone retries (a retry is stored once). The listener does not judge: it may
run in a process that holds no shard, or not the shard of the phone's wearer. So it
publishes the request, as `pings.jsonl` records it, on `osmand/<device>` with QoS 1 —
the topic the shard that judges that person subscribes, in its persistent session — and
waits for that shard's ingest to send a commit receipt (ingest.receipts) after the commit.
docs/scaling.md weighs this against the alternatives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fencewatch.metrics import FIXES_REJECTED, OSMAND_REQUESTS
from geofence.ruleset import RuleSet
from ingest import osmand, receipts, topics
from ingest.decode import MAX_PAYLOAD, Rejection, decode_for, decode_protected
from ingest.publisher import Publisher

log = logging.getLogger("fencewatch.osmand")

COMMIT_WAIT_S = 10.0  # the Android Traccar Client gives up after 15 s
CONNECTION = "osmand"  # the publisher's login among the service's connections (MqttAddress.login)


class OsmandListener:
    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: Callable[[], RuleSet],
        mqtt_url: str,
        client_id: str,
        commit_wait_s: float = COMMIT_WAIT_S,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.commit_wait_s = commit_wait_s
        self.publisher = Publisher(mqtt_url, client_id, CONNECTION)
        self.receipts = receipts.Receipts(pool)
        self.app = Starlette(routes=[Route("/{path:path}", self._request, methods=["GET", "POST"])])

    @property
    def ready(self) -> bool:
        """It can hand requests on and hear their commits."""
        return self.publisher.connected and self.receipts.listening

    async def run(self) -> None:
        self.publisher.start()
        try:
            await self.receipts.run()
        finally:
            self.publisher.stop()

    async def _request(self, request: Request) -> PlainTextResponse:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_PAYLOAD:
                return _answer(400, f"too_large: a body over {MAX_PAYLOAD} bytes")
        status, text = await self.answer(
            request.url.query, request.headers.get("content-type", ""), bytes(body)
        )
        return _answer(status, text)

    async def answer(self, query: str, content_type: str, body: bytes) -> tuple[int, str]:
        """(HTTP status, text) for one request."""
        at = time.time_ns() // 1_000_000
        payload = osmand.request_payload(query, content_type, body, at)
        rules = self.rules()
        # A protected person's phone is published like any (its shard keeps it nowhere).
        decoded = decode_protected(rules, topics.OSMAND, payload, at)
        if decoded is not None:
            # Where they were is not kept with a rejection (docs/security.md).
            decoded.rejections = [
                msgspec.structs.replace(r, payload=b"") for r in decoded.rejections
            ]
        else:
            decoded = decode_for(rules, topics.OSMAND, payload, at)
        problems = [f"{r.reason}: {r.detail}" for r in decoded.rejections]
        devices = [f.device for f in decoded.fixes] + [e.device for e in decoded.events]
        if not devices:
            await self._rejected(payload, decoded.rejections)
            return 400, "; ".join(problems)
        if not self.ready:
            return 503, "not connected to the broker or the database yet: send it again"
        topic = topics.osmand(devices[0])
        key = receipts.key(topic, payload)
        receipt = self.receipts.expect(key)
        try:
            async with asyncio.timeout(self.commit_wait_s):
                await self.publisher.publish(topic, payload)
                reason = await receipt
        except (TimeoutError, ConnectionError) as exc:
            log.info("OsmAnd request from %s not committed in time (%s)", devices[0], exc)
            return 503, "not committed in time: send it again"
        finally:
            self.receipts.forget(key, receipt)
        if reason and reason not in problems:
            problems.append(reason)
        return (400, "; ".join(problems)) if problems else (200, "")

    async def _rejected(self, payload: bytes, rejections: list[Rejection]) -> None:
        """Counted and kept like a rejected MQTT message (what reaches ingest is kept there)."""
        for r in rejections:
            FIXES_REJECTED.labels(r.reason).inc()
        try:
            await self.pool.executemany(
                "INSERT INTO rejected_messages (topic, payload, reason) VALUES ($1, $2, $3)",
                [(r.topic, r.payload, f"{r.reason}: {r.detail}") for r in rejections],
            )
        except Exception as exc:  # the phone still gets its 400
            log.warning("rejected OsmAnd request not recorded (%s)", exc)


def _answer(status: int, text: str) -> PlainTextResponse:
    OSMAND_REQUESTS.labels(str(status)).inc()
    return PlainTextResponse(text, status_code=status)
