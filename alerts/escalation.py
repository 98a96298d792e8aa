"""Routing and escalation of alerts, as persisted timers (restart-safe).

The state lives on the alert row: `routed` (has the first notification been queued?),
`escalation` (the level told so far) and `escalate_at` (when the next level is due while
the alert stays open). `Escalator` claims one due alert at a time with `FOR UPDATE SKIP
LOCKED` and takes its step in one transaction — the alert row, the timeline entry and
every notification (outbox rows) commit together or not at all. So a crash or a kill at
any point neither loses a step (it was not committed: the next pass takes it) nor repeats
one (it was: the row no longer qualifies), and several escalators may run side by side.

Steps:
- a new alert (`routed` false, status open) goes at once to the responsible officer (level
  0; the first level that has someone if the officer cannot be reached), and a
  jurisdiction exit or exclusion-zone entry that is live (not late, still active) orders
  the device to return (`return_now`, 责令立即返回);
- a protected person is warned before anyone is told, and again (at most every
  WARN_AGAIN_S) when the danger comes back (`_REWARN`);
- people who joined a gathering after it was routed: their offices are told as of a new
  alert, and nobody told of it already is told again;
- an open alert past `escalate_at` goes one level up: station head (1), county bureau (2);
  each step is an 'escalated' timeline entry, `alerts.escalation` and a webhook event.
An alert held by a suspension window (alerts.hold) is not routed until its hold ends; then
it is routed as a new one, so its escalation starts from its release.
The same loop releases storm summaries when due (alerts.ratelimit) and puts pursued devices
back to normal reporting (alerts.pursuit.restore_due).
An alert that is acknowledged or resolved is no longer 'open' and is never escalated: the
acknowledge endpoint needs to know nothing about this.

The time an alert may wait depends on its severity and is shorter in a heightened period
(重大节假日、重要会议期间: a row of `heightened_periods` in force for the person's office).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from alerts import downlink, pursuit, routing, templates
from alerts.clock import Clock, system_clock
from alerts.hold import find_hold
from alerts.outbox import enqueue
from alerts.ratelimit import release_due
from alerts.record import NOTIFY_CHANNEL, append_event, queue_change
from fencewatch.config import DEFAULT_ESCALATE_AFTER_S, DEFAULT_PURSUIT_HOLD_S
from geofence.together import PROTECTED
from storage.db import UNAVAILABLE, Conn
from storage.listen import WakeLoop
from storage.repo import orders as orders_repo
from storage.repo import proximity as proximity_repo

log = logging.getLogger(__name__)

RETURN_NOW_TYPES = ("jurisdiction_exit", "exclusion_enter")
ACTOR = "scheduler"


class EscalationPolicy(msgspec.Struct, frozen=True):
    # Seconds an open alert may wait at each level, by severity; 0 = it never escalates.
    after_s: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_ESCALATE_AFTER_S))
    heightened_factor: float = 0.5
    max_level: int = routing.MAX_LEVEL

    def delay(self, severity: str, heightened: bool) -> timedelta | None:
        seconds = self.after_s.get(severity, self.after_s.get("normal", 0))
        if seconds <= 0:
            return None
        return timedelta(seconds=seconds * (self.heightened_factor if heightened else 1.0))


# A held alert (alerts.hold) is not new until its hold is due to end.
_NEW = """
SELECT * FROM alerts
WHERE NOT routed AND (held_until IS NULL OR held_until <= $1) AND id <> ALL($2::bigint[])
ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
"""

_DUE = """
SELECT * FROM alerts
WHERE status = 'open' AND routed AND escalate_at <= $1 AND id <> ALL($2::bigint[])
ORDER BY escalate_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
"""

# The danger came back to a protected person (a `reopened` step after their last warning)
# while the alert is active, whatever the officers did with the case: they are warned
# again, at most once every WARN_AGAIN_S after their last warning sent — a supervisee
# pacing at the edge of the distance must not flood them, and one still near when that
# time is up is warned then.
WARN_AGAIN_S = 600
_REWARN = """
SELECT a.* FROM alerts a
WHERE a.type = 'protected_proximity' AND a.active AND a.routed AND a.id <> ALL($2::bigint[])
  AND EXISTS (SELECT 1 FROM protected_persons p WHERE p.id = a.detail->>'order' AND p.sms <> '')
  AND (SELECT max(id) FROM alert_events WHERE alert_id = a.id AND action = 'reopened')
    > coalesce((SELECT max(id) FROM alert_events WHERE alert_id = a.id AND action = 'warned'), 0)
  AND coalesce((SELECT max(at) FROM alert_events WHERE alert_id = a.id AND action = 'warned'
    AND NOT detail ? 'skipped'), '-infinity') <= $1::timestamptz - make_interval(secs => $3)
ORDER BY a.id LIMIT 1 FOR UPDATE OF a SKIP LOCKED
"""

# People confirmed at a gathering after it was routed (a `joined` step after the last
# `routed_joined`): their offices are told (`_tell_joined`).
_JOINED = """
SELECT a.* FROM alerts a
WHERE a.type = 'gathering' AND a.routed AND (a.held_until IS NULL OR a.held_until <= $1)
  AND a.id <> ALL($2::bigint[])
  AND (SELECT max(id) FROM alert_events WHERE alert_id = a.id AND action = 'joined')
    > coalesce((SELECT max(id) FROM alert_events WHERE alert_id = a.id
      AND action = 'routed_joined'), 0)
ORDER BY a.id LIMIT 1 FOR UPDATE OF a SKIP LOCKED
"""

# Everyone the scheduler has told of an alert, by `routing.Contact.who`.
_TOLD = """
SELECT DISTINCT t FROM alert_events e, jsonb_array_elements_text(e.detail->'to') t
WHERE e.alert_id = $1 AND e.actor = $2
"""

_NEXT_DUE = """
SELECT least(
    (SELECT min(escalate_at) FROM alerts WHERE status = 'open' AND escalate_at IS NOT NULL),
    (SELECT min(release_at) FROM notification_holds WHERE released_at IS NULL),
    (SELECT min(relaxed_at) + $1::interval FROM device_pursuits),
    (SELECT min(held_until) FROM alerts WHERE NOT routed))
"""


class Escalator:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        policy: EscalationPolicy | None = None,
        channels: routing.Channels | None = None,
        timezone: str = "Asia/Shanghai",
        clock: Clock = system_clock,
        poll_interval: float = 5.0,
        pursuit_hold_s: float = DEFAULT_PURSUIT_HOLD_S,
    ) -> None:
        self.pool = pool
        self.pursuit_hold = timedelta(seconds=pursuit_hold_s)
        self.policy = policy or EscalationPolicy()
        self.channels = channels or routing.Channels()
        self.timezone = timezone
        self.clock = clock
        self.poll_interval = poll_interval
        # Woken by alerts.record when new alerts commit.
        self._loop = WakeLoop(
            pool, NOTIFY_CHANNEL, poll_interval=poll_interval, log=log, name="escalation"
        )
        self._failed_last_pass = False

    # -- one pass ------------------------------------------------------------------------

    async def step(self) -> int:
        """Route every new alert, take every due escalation step, release due storm
        summaries and restore relaxed pursuits; returns how many things were done."""
        self._failed_last_pass = False
        done = await self.route_new()
        done += await self.route_joined()
        done += await self.warn_again()
        done += await self.escalate_due()
        done += await release_due(self.pool, now=self.clock(), timezone=self.timezone)
        done += await pursuit.restore_due(self.pool, now=self.clock(), hold=self.pursuit_hold)
        return done

    async def route_new(self) -> int:
        return await self._each(_NEW, self._route)

    async def route_joined(self) -> int:
        return await self._each(_JOINED, self._tell_joined)

    async def escalate_due(self) -> int:
        return await self._each(_DUE, self._escalate)

    async def warn_again(self) -> int:
        return await self._each(_REWARN, self._warn_protected, WARN_AGAIN_S)

    async def _each(self, query: str, work: Any, *more: Any) -> int:
        """Claim and handle due alerts one per transaction. An alert whose step fails for
        a reason of its own is left for the next pass and does not hold up the others; a
        lost connection ends the pass (the claim is rolled back with it)."""
        done: int = 0
        failed: list[int] = []
        while True:
            now = self.clock()
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(query, now, failed, *more)
                if row is None:
                    return done
                try:
                    async with conn.transaction():  # a savepoint: the claim stays
                        await work(conn, row, now)
                except UNAVAILABLE:
                    raise
                except Exception:
                    log.exception("alert %s: routing step failed; retried later", row["id"])
                    failed.append(row["id"])
                    self._failed_last_pass = True
                    continue
            done += 1

    async def _route(self, conn: Conn, alert: asyncpg.Record, now: datetime) -> None:
        """The first step: tell the officer, order the device back, start the timer —
        unless a suspension window holds the alert (alerts.hold); one that held it and has
        ended releases it now."""
        first = alert["type"] == PROTECTED and not await _warnings(conn, alert)
        if alert["hold"] is None and alert["status"] == "open" and first:
            # The protected person is warned first, whatever holds the alert for officers
            # (a case reopened after they were warned: _REWARN, at its pace).
            await self._warn_protected(conn, alert, now)
        found = await find_hold(conn, alert["supervisee_id"], alert["type"], now)
        if found is not None:
            hold, held_until = found
            await conn.execute(
                "UPDATE alerts SET hold = $2, held_until = $3 WHERE id = $1",
                alert["id"],
                hold,
                held_until,
            )
            await append_event(conn, alert["id"], ACTOR, "held", hold, at=now)
            return
        if alert["hold"] is not None:
            await append_event(conn, alert["id"], ACTOR, "released", alert["hold"], at=now)
        detail: dict[str, Any] = {"level": 0}
        escalate_at = None
        if alert["status"] == "open":
            heightened = await orders_repo.heightened_in_force(conn, now, alert["supervisee_id"])
            delay = self.policy.delay(alert["severity"], heightened)
            if delay is not None and self.policy.max_level > 0:
                escalate_at = now + delay
            level, people = await routing.alert_first_contacts(conn, alert)
            detail["level"] = level
            detail |= await self._tell(conn, alert, people, event="raised", level=level)
            if heightened:
                detail["heightened"] = True
            command = await self._auto_return(conn, alert)
            if command is not None:
                detail["command"] = command
        else:
            detail["skipped"] = f"already {alert['status']}"
        if escalate_at is not None:
            detail["escalate_at"] = escalate_at.isoformat()
        row = await conn.fetchrow(
            "UPDATE alerts SET routed = true, escalate_at = $2 WHERE id = $1 RETURNING *",
            alert["id"],
            escalate_at,
        )
        assert row is not None
        await append_event(conn, alert["id"], ACTOR, "routed", detail, at=self.clock())
        if alert["hold"] is not None:
            # Webhook receivers heard nothing while it was held: they get it now, as it is.
            await queue_change(conn, "raised", row, held=alert["hold"])

    async def _tell_joined(self, conn: Conn, alert: asyncpg.Record, now: datetime) -> None:
        """People who joined a gathering after it was routed: their offices hear of it as
        for a new alert (each one's first level that has someone); whoever was told of it
        already is not told again. Going up later takes in their offices too."""
        told = {r["t"] for r in await conn.fetch(_TOLD, alert["id"], ACTOR)}
        level, people = await routing.alert_first_contacts(conn, alert)
        fresh = [c for c in people if c.who not in told]
        detail: dict[str, Any] = {"level": level}
        detail |= await self._tell(conn, alert, fresh, event="joined", level=level)
        await append_event(conn, alert["id"], ACTOR, "routed_joined", detail, at=now)

    async def _tell(
        self,
        conn: Conn,
        alert: asyncpg.Record,
        people: list[routing.Contact],
        *,
        event: str,
        level: int,
        overdue_s: int | None = None,
    ) -> dict[str, Any]:
        """Queue a step's SMS and e-mail to `people`; the timeline's record of it."""
        queued = await routing.notify(
            conn,
            alert,
            people,
            event=event,
            level=level,
            channels=self.channels,
            timezone=self.timezone,
            overdue_s=overdue_s,
        )
        return {
            "to": [c.who for c in people],
            "to_zh": templates.recipients_zh([c.name for c in people]),
            "queued": queued,
        }

    async def _warn_protected(self, conn: Conn, alert: asyncpg.Record, now: datetime) -> None:
        """An SMS at once to the protected person an alert is about, when their order gives
        their number (storage.repo.proximity); the timeline says it was sent, not to whom.
        Also when the danger comes back (_REWARN)."""
        if alert["type"] != PROTECTED:
            return
        detail = alert["detail"] if isinstance(alert["detail"], dict) else {}
        order = str(detail.get("order", ""))
        number = await proximity_repo.protected_sms(conn, order)
        if not number:
            return
        if not self.channels.sms:
            # Said where the officer looks: the person at risk was not warned.
            skipped = {"order": order, "skipped": "no SMS gateway (FENCEWATCH_SMS_URL)"}
            await append_event(conn, alert["id"], ACTOR, "warned", skipped, at=now)
            log.error("alert %s: protected person not warned: no SMS gateway", alert["id"])
            return
        text = templates.protected_warning_text(float(detail.get("distance_m", 0)))
        payload = {
            "kind": "warning",
            "alert_id": alert["id"],
            "alert_type": alert["type"],
            "supervisee": alert["supervisee_id"],
            "throttle": False,  # a warning to the person at risk is never held back
            "text": text,
        }
        await enqueue(conn, routing.SMS, payload, recipient=number)
        step = {"order": order, **({"again": True} if await _warnings(conn, alert) else {})}
        await append_event(conn, alert["id"], ACTOR, "warned", step, at=now)

    async def _auto_return(self, conn: Conn, alert: asyncpg.Record) -> dict[str, Any] | None:
        """责令立即返回 to the device of a live breach of the area rules."""
        if (
            not self.channels.downlink
            or alert["type"] not in RETURN_NOW_TYPES
            or alert["late"]
            or not alert["active"]
        ):
            return None
        # Phones on OwnTracks or on HTTP (OsmAnd) do not listen on em/<device>/cmd.
        listens = await conn.fetchval(
            "SELECT owntracks IS NULL AND osmand IS NULL FROM devices WHERE id = $1",
            alert["device_id"],
        )
        if not listens:
            return None
        return await downlink.queue_command(
            conn,
            alert["device_id"],
            "return_now",
            issued_by=ACTOR,
            text=templates.command_default_text("return_now", alert["type"]),
            alert_id=alert["id"],
            supervisee=alert["supervisee_id"],
        )

    async def _escalate(self, conn: Conn, alert: asyncpg.Record, now: datetime) -> None:
        level = alert["escalation"] + 1
        if level > self.policy.max_level:
            await conn.execute("UPDATE alerts SET escalate_at = NULL WHERE id = $1", alert["id"])
            return
        heightened = await orders_repo.heightened_in_force(conn, now, alert["supervisee_id"])
        delay = self.policy.delay(alert["severity"], heightened)
        next_at = now + delay if delay is not None and level < self.policy.max_level else None
        row = await conn.fetchrow(
            "UPDATE alerts SET escalation = $2, escalate_at = $3 WHERE id = $1 RETURNING *",
            alert["id"],
            level,
            next_at,
        )
        assert row is not None
        overdue_s = max(0, int((now - alert["raised_at"]).total_seconds()))
        people = await routing.alert_contacts(conn, alert, level)
        detail: dict[str, Any] = {
            "level": level,
            "level_name": routing.LEVELS[level],
            "level_zh": templates.LEVEL_ZH[level],
            "unacknowledged_s": overdue_s,
        }
        detail |= await self._tell(
            conn, row, people, event="escalated", level=level, overdue_s=overdue_s
        )
        if heightened:
            detail["heightened"] = True
        if next_at is not None:
            detail["escalate_at"] = next_at.isoformat()
        await append_event(conn, alert["id"], ACTOR, "escalated", detail, at=self.clock())
        await queue_change(conn, "escalated", row, level=level)

    # -- the loop ------------------------------------------------------------------------

    def wake(self) -> None:
        self._loop.wake()

    async def run(self, stop: asyncio.Event) -> None:
        """Route and escalate until `stop` is set; rides out database outages."""
        await self._loop.run(stop, self._pass)

    async def _pass(self) -> float:
        """A step; the seconds until the next thing falls due."""
        await self.step()
        if self._failed_last_pass:
            return self.poll_interval  # what failed is still due: do not spin on it
        due = await self.pool.fetchval(_NEXT_DUE, self.pursuit_hold)
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.0, (due - self.clock()).total_seconds()))


async def _warnings(conn: Conn, alert: asyncpg.Record) -> int:
    """How many times the protected person was warned (or not, and why) of `alert`."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM alert_events WHERE alert_id = $1 AND action = 'warned'",
        alert["id"],
    )
    return n
