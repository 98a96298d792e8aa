"""The scheduled duties, on apscheduler's AsyncIOScheduler inside the service:

    Duties(pool, settings).run(stop)

Each duty has periods (an hour, a month) and a due time in each; a run is recorded once
per (duty, period) in `duty_runs`, in the same transaction as the duty's work. So a run
is done exactly once whatever happens: a crash mid-run rolls the record back with the
work and the next tick does it again; two services racing for it are serialised by the
primary key; and a run missed while the service was down is caught up at start (the
latest period that is due, not every period since the beginning of time).

Duties go by an injectable clock (alerts.clock) — apscheduler's job only ticks on real
time and asks the duties what is due at the clock's time — so tests can move the clock to
the 25th and watch the scheduler produce the month's reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.asyncio import Redis

from alerts.clock import Clock, system_clock
from alerts.feed import announce
from alerts.routing import Channels
from duties import reminders, reports
from fencewatch.config import Settings
from storage.db import Conn
from supervision import checkins

log = logging.getLogger(__name__)


class Due(msgspec.Struct, frozen=True):
    period: str
    due_at: datetime


class Duty(Protocol):
    name: str

    def latest(self, now: datetime) -> Due | None:
        """The latest period whose due time is not after `now`."""

    async def run(self, conn: Conn, due: Due, now: datetime) -> dict[str, Any]:
        """Do the period's work inside the caller's transaction; returns a summary."""


class Reminders:
    """Hourly: reminders before monitoring orders and supervision terms end, and when a
    leave return is due or overdue."""

    name = "reminders"

    def __init__(self, settings: Settings, channels: Channels) -> None:
        self.settings = settings
        self.channels = channels
        self.tz = ZoneInfo(settings.timezone)

    def latest(self, now: datetime) -> Due:
        local = now.astimezone(self.tz).replace(minute=0, second=0, microsecond=0)
        return Due(local.strftime("%Y-%m-%dT%H"), local)

    async def run(self, conn: Conn, due: Due, now: datetime) -> dict[str, Any]:
        return await reminders.send_due(
            conn,
            now=now,
            timezone=self.settings.timezone,
            order_days=self.settings.remind_order_days,
            term_days=self.settings.remind_term_days,
            channels=self.channels,
        )


class MonthlyReports:
    """On the report day (the 25th) at 08:00 local: 在册人数核对 and 法定不批准出境人员报备,
    for each justice station and police station, as CSV and XLSX."""

    name = "monthly_reports"
    AT = time(8, 0)

    def __init__(self, settings: Settings) -> None:
        self.day = settings.report_day
        self.tz = ZoneInfo(settings.timezone)
        self.timezone = settings.timezone

    def _due_in(self, year: int, month: int) -> datetime:
        return datetime.combine(date(year, month, self.day), self.AT, self.tz)

    def latest(self, now: datetime) -> Due:
        local = now.astimezone(self.tz)
        due = self._due_in(local.year, local.month)
        if due > local:
            previous = local.replace(day=1) - timedelta(days=1)
            due = self._due_in(previous.year, previous.month)
        return Due(due.strftime("%Y-%m"), due)

    async def run(self, conn: Conn, due: Due, now: datetime) -> dict[str, Any]:
        # As of now: a run caught up after the day shows when its figures were taken.
        return await reports.produce(conn, period=due.period, as_of=now, tz=self.timezone)


class CheckIns:
    """Every tick: the check-ins (定位签到) that have come due are asked for, and pending
    ones answered or missed (supervision.checkins). Not a Duty with a run per period: it
    is idempotent by itself (one check-in per person and due time), and a row in
    `duty_runs` every minute would only grow."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.tz = ZoneInfo(settings.timezone)
        self.secret = settings.checkin_secret
        self.sms = bool(settings.sms_url)
        self.redis = redis  # live consoles hear of the alerts of missed check-ins

    async def run(self, pool: asyncpg.Pool, now: datetime) -> dict[str, int]:
        async with pool.acquire() as conn, conn.transaction():
            asked = await checkins.issue_due(conn, now, self.tz, self.secret, self.sms)
            done = {"asked": asked, **await checkins.settle(conn, now, self.tz)}
        if done["missed"] and self.redis is not None:
            async with pool.acquire() as conn:
                for change in await checkins.raised_at(conn, now):
                    await announce(self.redis, change)
        return done


class Duties:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        tick_s: float = 60.0,
        duties: Sequence[Duty] | None = None,
        redis: Redis | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.tick_s = tick_s
        self.timezone = ZoneInfo(settings.timezone)
        channels = Channels(sms=bool(settings.sms_url), email=bool(settings.smtp_url))
        self.duties: list[Duty] = (
            list(duties)
            if duties is not None
            else [Reminders(settings, channels), MonthlyReports(settings)]
        )
        self.check_ins = CheckIns(settings, redis) if duties is None else None
        self.scheduler: AsyncIOScheduler | None = None

    async def run_due(self) -> list[tuple[str, str]]:
        """Run every duty whose latest period has not been run; returns (duty, period) of
        the runs done now."""
        now = self.clock()
        done = []
        for duty in self.duties:
            due = duty.latest(now)
            if due is None:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                claimed = await conn.fetchval(
                    "INSERT INTO duty_runs (duty, period, due_at, ran_at) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (duty, period) DO NOTHING RETURNING true",
                    duty.name,
                    due.period,
                    due.due_at,
                    now,
                )
                if not claimed:
                    continue
                detail = await duty.run(conn, due, now)
                await conn.execute(
                    "UPDATE duty_runs SET detail = $3::text::jsonb WHERE duty = $1 AND period = $2",
                    duty.name,
                    due.period,
                    msgspec.json.encode(detail).decode(),
                )
            log.info("duty %s for %s done: %s", duty.name, due.period, detail)
            done.append((duty.name, due.period))
        return done

    async def _tick(self) -> None:
        try:
            await self.run_due()
            if self.check_ins is not None:
                done = await self.check_ins.run(self.pool, self.clock())
                if any(done.values()):
                    log.info("check-ins: %s", done)
        except Exception:
            # The next tick tries again: nothing was recorded for a run that failed.
            log.exception("scheduled duties failed; retried at the next tick")

    def start(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(timezone=self.timezone)
        # The first tick at once: that is the catch-up of anything missed while down.
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.tick_s,
            next_run_time=datetime.now(self.timezone),
            id="duties",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.start()
        self.scheduler = scheduler
        return scheduler

    def shutdown(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run the scheduler until `stop` is set."""
        self.start()
        try:
            await stop.wait()
        finally:
            self.shutdown()
