"""Storm control for messages to people: per-person deduplication and rate limits in Redis,
with what is held back folded into one summary message.

For each (channel, recipient, supervisee) at most `limit` messages go out within
`window_s`, and the same thing (the same alert type newly raised, say) only once per
window. A message over the limit is not sent alone: it is *held* — a row in PostgreSQL's
`notification_holds`, written before the outbox row counts as done — and once the window
has passed, `release_due` queues one summary message for all of that person's held
messages through the outbox. The alerts themselves are never touched: only how many
messages about them a phone receives.

Redis is only the counter: when it is unreachable every message is sent (fail open), and
counts are taken only for messages that really went out, so a gateway that was down does
not use up the window with failed attempts.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

import asyncpg
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerts import templates
from alerts.clock import Clock, system_clock
from alerts.outbox import OutboxMessage, enqueue
from alerts.routing import person_name

log = logging.getLogger(__name__)

_PREFIX = "fencewatch:notify"


class Throttle:
    def __init__(
        self,
        redis: Redis | None,
        *,
        limit: int = 3,
        window_s: int = 600,
        clock: Clock = system_clock,
    ) -> None:
        self.redis = redis
        self.limit = limit
        self.window_s = window_s
        self.clock = clock

    @staticmethod
    def applies(message: OutboxMessage) -> bool:
        return bool(message.payload.get("supervisee")) and message.payload.get("throttle", True)

    def _keys(self, message: OutboxMessage) -> tuple[str, str | None]:
        p = message.payload
        base = f"{_PREFIX}:{message.channel}:{message.recipient}:{p['supervisee']}"
        dedup = p.get("dedup")
        return f"{base}:sent", (f"{base}:dedup:{dedup}" if dedup else None)

    async def verdict(self, message: OutboxMessage) -> str | None:
        """None to send; otherwise why the message is held (rate_limited, duplicate)."""
        if self.redis is None or not self.applies(message):
            return None
        sent, dedup = self._keys(message)
        now = self.clock().timestamp()
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zremrangebyscore(sent, "-inf", now - self.window_s)
            pipe.zcard(sent)
            if dedup:
                pipe.exists(dedup)
            results = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate limit unavailable (%s): sending without it", exc)
            return None
        if dedup and results[2]:
            return "duplicate"
        if results[1] >= self.limit:
            return "rate_limited"
        return None

    async def sent(self, message: OutboxMessage) -> None:
        """Count a message that went out (summaries too: the phone got them)."""
        if self.redis is None or not message.payload.get("supervisee"):
            return
        sent, dedup = self._keys(message)
        now = self.clock().timestamp()
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zadd(sent, {message.payload["delivery_id"]: now})
            pipe.expire(sent, self.window_s + 1)
            if dedup and message.payload.get("throttle", True):
                pipe.set(dedup, "1", ex=self.window_s)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate limit unavailable (%s): message not counted", exc)

    async def hold(self, pool: asyncpg.Pool, message: OutboxMessage, reason: str) -> None:
        """Keep the message for the summary. Idempotent: a resent outbox row holds once."""
        now = self.clock()
        p = message.payload
        await pool.execute(
            "INSERT INTO notification_holds (outbox_id, channel, recipient, supervisee_id,"
            " alert_id, reason, payload, held_at, release_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)"
            " ON CONFLICT (outbox_id) DO NOTHING",
            message.id,
            message.channel,
            message.recipient,
            p["supervisee"],
            p.get("alert_id"),
            reason,
            msgspec.json.encode(p).decode(),
            now,
            now + timedelta(seconds=self.window_s),
        )


_DUE_GROUPS = """
SELECT channel, recipient, supervisee_id FROM notification_holds
WHERE released_at IS NULL
GROUP BY channel, recipient, supervisee_id
HAVING min(release_at) <= $1
ORDER BY min(release_at)
LIMIT $2
"""

_RELEASE = """
UPDATE notification_holds SET released_at = $4
WHERE released_at IS NULL AND channel = $1 AND recipient = $2 AND supervisee_id = $3
RETURNING alert_id, payload::text AS payload, held_at
"""


async def release_due(pool: asyncpg.Pool, *, now: datetime, timezone: str, batch: int = 50) -> int:
    """Queue one summary per (channel, recipient, person) whose held messages are due;
    returns how many summaries were queued. Each group is released and summarised in one
    transaction, so a crash neither loses nor doubles a summary."""
    done = 0
    for group in await pool.fetch(_DUE_GROUPS, now, batch):
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _RELEASE, group["channel"], group["recipient"], group["supervisee_id"], now
            )
            if not rows:
                continue  # another worker released it meanwhile
            payloads = [msgspec.json.decode(r["payload"]) for r in rows]
            counts = Counter(str(p.get("alert_type") or p.get("kind")) for p in payloads)
            supervisee = group["supervisee_id"]
            name = await person_name(conn, supervisee)
            text = templates.summary_text(
                name=name,
                supervisee=supervisee,
                counts=counts,
                first=min(r["held_at"] for r in rows),
                last=max(r["held_at"] for r in rows),
                timezone=timezone,
            )
            alert_ids = sorted({r["alert_id"] for r in rows if r["alert_id"] is not None})
            payload = {
                "kind": "summary",
                "supervisee": supervisee,
                "throttle": False,
                "count": len(rows),
                "alert_ids": alert_ids,
                "to": payloads[0].get("to"),
                "subject": f"告警汇总：{name or supervisee}（{len(rows)}条）",
                "text": text,
            }
            await enqueue(
                conn,
                group["channel"],
                payload,
                recipient=group["recipient"],
            )
            done += 1
    return done
