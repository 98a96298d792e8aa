"""Issue 6: alerts reach the right people, escalate when ignored, and are never lost — on
the real PostgreSQL and Redis, with a local HTTP server standing in for the SMS gateway
and a local SMTP server for e-mail. No timing assertions: waits are bounded, and the
escalation schedule runs on a controlled clock."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from alerts.alerting import Alerting
from alerts.clock import ManualClock
from alerts.escalation import EscalationPolicy, Escalator
from alerts.record import apply
from alerts.routing import Channels
from fencewatch.config import ConfigError, Settings
from fencewatch.embedded import free_port
from geofence.model import Verdict
from storage.db import open_pool
from tests.test_webhook import Receiver

ROOT = Path(__file__).resolve().parent.parent
SMS_SECRET = "sms-密钥"
BOUND = 30.0  # seconds before giving up: a broken part fails the test instead of hanging
OFFICER_PHONE, HEAD_PHONE, COUNTY_PHONE = "13800000001", "13800000002", "13800000003"
POSITION = {"lat": 28.45170, "lon": 119.91270, "acc": 8.5}

SEED = """
INSERT INTO offices (id, name, kind, parent_id) VALUES
    ('C', '丽水市社区矫正监控中心', 'center', NULL),
    ('K1', '莲都区司法局', 'county', 'C'),
    ('S1', '紫金司法所', 'station', 'K1');
INSERT INTO officers (id, name, office_id, phone, email, role) VALUES
    ('O1', '王警官', 'S1', '13800000001', 'o1@example.org', 'officer'),
    ('H1', '李所长', 'S1', '13800000002', 'h1@example.org', 'head'),
    ('KH', '赵科长', 'K1', '13800000003', NULL, 'officer');
UPDATE offices SET head_officer_id = 'H1' WHERE id = 'S1';
UPDATE offices SET head_officer_id = 'KH', duty_email = 'duty@k1.example.org' WHERE id = 'K1';
INSERT INTO zones (id, kind, name, geometry) VALUES
    ('331102', 'jurisdiction', '莲都区', '{"type": "Point", "coordinates": [119.9, 28.4]}')
    ON CONFLICT (id) DO NOTHING;
"""


async def until(condition: Callable[[], Awaitable[Any]], what: str = "condition") -> Any:
    async with asyncio.timeout(BOUND):
        while True:
            found = await condition()
            if found:
                return found
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


async def seed(pool: asyncpg.Pool, people: int = 1) -> None:
    await pool.execute(SEED)
    for n in range(1, people + 1):
        await pool.execute(
            "INSERT INTO supervisees (id, name, office_id, officer_id, jurisdiction)"
            " VALUES ($1, $2, 'S1', 'O1', ARRAY['331102'])",
            f"P{n}",
            f"张{n}",
        )
        await pool.execute("INSERT INTO devices (id) VALUES ($1)", f"T{n}")
        await pool.execute(
            "INSERT INTO device_assignments (device_id, supervisee_id) VALUES ($1, $2)",
            f"T{n}",
            f"P{n}",
        )


async def raise_alert(
    pool: asyncpg.Pool,
    supervisee: str = "P1",
    kind: str = "jurisdiction_exit",
    detail: dict[str, Any] = POSITION,
) -> int:
    """What ingest does when the engine confirms a breach (alerts.record.apply)."""
    device = "T" + supervisee.removeprefix("P")
    ts = int(datetime.now(UTC).timestamp() * 1000)
    key = f"{supervisee}:{kind}:{uuid.uuid4()}"
    verdict = Verdict("raise", kind, supervisee, device, ts, key, False, detail)
    async with pool.acquire() as conn, conn.transaction():
        [changed] = await apply(conn, [verdict])
    return int(changed["alert"]["id"])


class SmsGateway(Receiver):
    """The SMS gateway: checks every signature, keeps what it was sent."""

    def messages(self) -> list[dict[str, Any]]:
        out = []
        for headers, body in self.requests:
            expected = hmac.new(SMS_SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["x-fencewatch-signature"] == f"sha256={expected}"
            out.append(msgspec.json.decode(body))
        return out

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["to"] == phone]


class SmtpServer:
    """Just enough SMTP to take mail from aiosmtplib."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def __aenter__(self) -> SmtpServer:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 stub ESMTP\r\n")
        data: list[bytes] | None = None
        while line := await reader.readline():
            if data is not None:
                if line == b".\r\n":
                    raw = b"".join(data)
                    parsed = email.message_from_bytes(raw, policy=email.policy.default)
                    assert isinstance(parsed, email.message.EmailMessage)
                    self.messages.append(parsed)
                    data = None
                    writer.write(b"250 OK\r\n")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-stub\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                data = []
                writer.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn, max_size=12)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def settings(sms_port: int | None = None, smtp_port: int | None = None, **more: Any) -> Settings:
    return Settings(
        sms_url=f"http://127.0.0.1:{sms_port}/sms" if sms_port else None,
        sms_secret=SMS_SECRET,
        smtp_url=f"smtp://127.0.0.1:{smtp_port}" if smtp_port else None,
        smtp_from="监控中心 <center@example.org>",
        **more,
    )


@contextlib.asynccontextmanager
async def alerting(
    pool: asyncpg.Pool, redis: Redis | None, s: Settings, **options: Any
) -> AsyncIterator[Alerting]:
    outbox = {"backoff_base": 0.05, "backoff_cap": 0.3, "poll_interval": 1.0}
    service = Alerting(pool, redis, s, None, poll_interval=0.2, outbox_options=outbox, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await task


async def timeline(pool: asyncpg.Pool, alert: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT actor, action, detail FROM alert_events WHERE alert_id = $1 ORDER BY at, id", alert
    )


async def test_a_new_alert_reaches_the_officer_by_sms_and_email(
    pool: asyncpg.Pool, redis: Redis
) -> None:
    await seed(pool)
    gateway = SmsGateway(free_port())
    async with SmtpServer() as smtp:
        with gateway.listening():
            async with alerting(pool, redis, settings(gateway.port, smtp.port)):
                alert = await raise_alert(pool)
                await until(lambda: asyncio.sleep(0, gateway.to(OFFICER_PHONE)), "no SMS")
                await until(lambda: asyncio.sleep(0, smtp.messages), "no e-mail")
                await until(
                    lambda: pool.fetchval(
                        "SELECT count(*) = 2 FROM deliveries WHERE outcome = 'delivered'"
                    )
                )

    [sms] = gateway.to(OFFICER_PHONE)
    assert sms["kind"] == "alert" and sms["alert_id"] == alert and sms["supervisee"] == "P1"
    text = sms["text"]
    raised = await pool.fetchval("SELECT ts FROM alerts WHERE id = $1", alert)
    shanghai = (raised + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")  # UTC+8, no DST
    for part in ("张1（P1）", "越界（擅自离开执行地）", "执行地：莲都区", "28.45170,119.91270"):
        assert part in text, (part, text)
    assert f"时间{shanghai}（北京时间）" in text
    assert gateway.to(HEAD_PHONE) == []  # only the responsible officer, until it escalates

    [mail] = smtp.messages
    assert mail["To"] == "o1@example.org"
    assert "越界" in str(mail["Subject"])
    assert "28.45170,119.91270" in mail.get_content()

    events = await timeline(pool, alert)
    assert [e["action"] for e in events][:2] == ["raised", "routed"]
    routed = events[1]["detail"]
    assert routed["level"] == 0 and routed["to"] == ["officer:O1"]
    notified = [e["detail"] for e in events if e["action"] == "notified"]
    assert {(n["channel"], n["recipient"], n["outcome"]) for n in notified} >= {
        ("sms", OFFICER_PHONE, "delivered"),
        ("email", "o1@example.org", "delivered"),
    }
    # The default policy gives a high-severity alert ten minutes before it escalates.
    row = await pool.fetchrow("SELECT routed, escalation, escalate_at, raised_at FROM alerts")
    assert row["routed"] and row["escalation"] == 0
    assert timedelta(minutes=9) < row["escalate_at"] - row["raised_at"] < timedelta(minutes=11)


async def test_an_exclusion_alert_names_the_zone(pool: asyncpg.Pool, redis: Redis) -> None:
    await seed(pool)
    zone = "被害人住所周边200米"
    await pool.execute(
        "INSERT INTO zones (id, kind, name, geometry) VALUES ('V1', 'exclusion', $1,"
        ' \'{"type": "Point", "coordinates": [119.91, 28.45]}\')',
        zone,
    )
    gateway = SmsGateway(free_port())
    with gateway.listening():
        async with alerting(pool, redis, settings(gateway.port)):
            alert = await raise_alert(
                pool, kind="exclusion_enter", detail={**POSITION, "zone": "V1"}
            )
            await until(lambda: asyncio.sleep(0, gateway.to(OFFICER_PHONE)), "no SMS")

    [sms] = gateway.to(OFFICER_PHONE)
    assert f"进入禁止区域（违反禁止令），禁止区域：{zone}，" in sms["text"], sms["text"]
    # The alert itself carries the name as it stood when raised, for the queue and the API.
    detail = await pool.fetchval("SELECT detail FROM alerts WHERE id = $1", alert)
    assert detail["zone"] == "V1" and detail["zone_name"] == zone


async def test_unacknowledged_it_escalates_on_schedule_and_acknowledging_stops_it(
    pool: asyncpg.Pool,
) -> None:
    await seed(pool, people=2)
    ignored = await raise_alert(pool, "P1", "jurisdiction_exit")  # high: 10 minutes a level
    seen = await raise_alert(pool, "P2", "strap_tamper")  # critical: 2 minutes a level
    clock = ManualClock()
    escalator = Escalator(
        pool,
        policy=EscalationPolicy(after_s={"critical": 120, "high": 600, "normal": 1800, "low": 0}),
        channels=Channels(sms=True, email=True),
        clock=clock,
    )
    assert await escalator.step() == 2

    async def level(alert: int) -> int:
        return int(await pool.fetchval("SELECT escalation FROM alerts WHERE id = $1", alert))

    clock.advance(119)
    assert await escalator.step() == 0
    clock.advance(1)
    assert await escalator.step() == 1  # the tamper alert, after two minutes
    assert (await level(seen), await level(ignored)) == (1, 0)
    # The station head acknowledges it (what POST /alerts/{id}/acknowledge does).
    await pool.execute("UPDATE alerts SET status = 'acknowledged' WHERE id = $1", seen)

    clock.advance(600 - 120 - 1)
    assert await escalator.step() == 0
    clock.advance(1)
    assert await escalator.step() == 1
    assert await level(ignored) == 1
    clock.advance(599)
    assert await escalator.step() == 0
    clock.advance(1)
    assert await escalator.step() == 1
    assert await level(ignored) == 2
    clock.advance(24 * 3600)  # the county bureau is the last level; the ack stopped the other
    assert await escalator.step() == 0
    assert (await level(seen), await level(ignored)) == (1, 2)

    steps = [e["detail"] for e in await timeline(pool, ignored) if e["action"] == "escalated"]
    assert [s["level"] for s in steps] == [1, 2]
    assert steps[0]["to"] == ["officer:H1"] and steps[0]["level_zh"] == "司法所负责人"
    assert steps[1]["to"] == ["office:K1", "officer:KH"]
    assert [s["unacknowledged_s"] // 60 for s in steps] == [10, 20]
    # Who was told what: officer first, then the head, then the county (SMS and e-mail).
    queued = await pool.fetch(
        "SELECT channel, recipient, payload FROM outbox WHERE channel IN ('sms', 'email')"
        " AND (payload ->> 'alert_id')::bigint = $1 ORDER BY id",
        ignored,
    )
    assert [(r["channel"], r["recipient"], r["payload"]["level"]) for r in queued] == [
        ("sms", OFFICER_PHONE, 0),
        ("email", "o1@example.org", 0),
        ("sms", HEAD_PHONE, 1),
        ("email", "h1@example.org", 1),
        ("email", "duty@k1.example.org", 2),
        ("sms", COUNTY_PHONE, 2),
    ]
    assert "已20分钟未签收，现报县级社区矫正机构" in queued[-1]["payload"]["text"]
    webhook = await pool.fetch(
        "SELECT payload FROM outbox WHERE channel = 'webhook' AND recipient = 'P1' ORDER BY id"
    )
    assert [(r["payload"]["event"], r["payload"]["alert"]["escalation"]) for r in webhook] == [
        ("raised", 0),
        ("escalated", 1),
        ("escalated", 2),
    ]


async def test_heightened_periods_shorten_the_wait(pool: asyncpg.Pool) -> None:
    await seed(pool)
    alert = await raise_alert(pool)
    clock = ManualClock()
    await pool.execute(
        "INSERT INTO heightened_periods (id, name, starts_at, ends_at)"
        " VALUES ('lh', '全国两会', $1, $2)",
        clock() - timedelta(days=1),
        clock() + timedelta(days=1),
    )
    escalator = Escalator(pool, clock=clock, policy=EscalationPolicy(heightened_factor=0.5))
    await escalator.step()
    clock.advance(299)
    assert await escalator.step() == 0
    clock.advance(1)
    assert await escalator.step() == 1  # 10 minutes halved
    [step] = [e["detail"] for e in await timeline(pool, alert) if e["action"] == "escalated"]
    assert step["heightened"] is True


async def test_gateway_down_then_up_every_message_arrives_once_in_order(
    pool: asyncpg.Pool, redis: Redis
) -> None:
    people = 6
    await seed(pool, people=people)
    gateway = SmsGateway(free_port())
    async with alerting(pool, redis, settings(gateway.port)):
        # Six people's breaches, all for one officer, while the gateway is down.
        alerts = [await raise_alert(pool, f"P{n}") for n in range(1, people + 1)]
        await until(
            lambda: pool.fetchval("SELECT count(*) = $1 FROM outbox WHERE channel = 'sms'", people),
            "not routed",
        )
        await until(
            lambda: pool.fetchval(
                "SELECT attempts >= 3 FROM outbox WHERE channel = 'sms' ORDER BY id LIMIT 1"
            ),
            "not retried",
        )
        tried = await pool.fetch("SELECT attempts FROM outbox WHERE channel = 'sms' ORDER BY id")
        assert [r["attempts"] for r in tried][1:] == [0] * (people - 1)  # nothing overtakes
        with gateway.listening():
            await until(
                lambda: pool.fetchval(
                    "SELECT bool_and(delivered_at IS NOT NULL) FROM outbox WHERE channel = 'sms'"
                ),
                "not delivered",
            )

    received = gateway.to(OFFICER_PHONE)
    assert [m["alert_id"] for m in received] == alerts
    queued = await pool.fetch("SELECT payload FROM outbox WHERE channel = 'sms' ORDER BY id")
    assert [m["delivery_id"] for m in received] == [r["payload"]["delivery_id"] for r in queued]
    outcomes = await pool.fetch(
        "SELECT alert_id, outcome, count(*) AS n FROM deliveries WHERE channel = 'sms'"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )
    delivered = {r["alert_id"]: r["n"] for r in outcomes if r["outcome"] == "delivered"}
    failed = {r["alert_id"]: r["n"] for r in outcomes if r["outcome"] == "failed"}
    assert delivered == dict.fromkeys(alerts, 1)
    assert failed[alerts[0]] >= 3  # every attempt is on the record, failures included


async def test_a_storm_collapses_into_one_summary(pool: asyncpg.Pool, redis: Redis) -> None:
    await seed(pool)
    clock = ManualClock()
    gateway = SmsGateway(free_port())
    kinds = ["jurisdiction_exit", "jurisdiction_exit", "curfew_breach", "no_fix", "low_battery"]
    s = settings(gateway.port, notify_limit=2, notify_window_s=600)
    with gateway.listening():
        async with alerting(pool, redis, s, clock=clock):
            alerts = [await raise_alert(pool, "P1", kind) for kind in kinds]
            await until(
                lambda: pool.fetchval(
                    "SELECT count(*) = 5 FROM outbox WHERE channel = 'sms'"
                    " AND delivered_at IS NOT NULL"
                ),
                "not handled",
            )
            assert len(gateway.to(OFFICER_PHONE)) == 2
            clock.advance(601)
            await until(lambda: asyncio.sleep(0, len(gateway.to(OFFICER_PHONE)) == 3), "summary")

    first, second, summary = gateway.to(OFFICER_PHONE)
    assert [first["alert_id"], second["alert_id"]] == [alerts[0], alerts[2]]
    assert summary["kind"] == "summary" and summary["alert_id"] is None
    assert "另有3条通知未逐条发送" in summary["text"]
    assert "越界（擅自离开执行地）1条" in summary["text"]
    holds = await pool.fetch(
        "SELECT alert_id, reason FROM notification_holds WHERE recipient = $1 ORDER BY id",
        OFFICER_PHONE,
    )
    # The repeated exit is a duplicate; past the limit of two, the rest wait for the summary.
    assert [(h["alert_id"], h["reason"]) for h in holds] == [
        (alerts[1], "duplicate"),
        (alerts[3], "rate_limited"),
        (alerts[4], "rate_limited"),
    ]
    # Every alert is on record, each with the outcome of its message to the officer. (The
    # clock's jump also escalated them to the station head, under the same limits.)
    assert await pool.fetchval("SELECT count(*) FROM alerts") == len(kinds)
    for alert in alerts:
        outcomes = {
            e["detail"]["outcome"]
            for e in await timeline(pool, alert)
            if e["action"] == "notified" and e["detail"]["recipient"] == OFFICER_PHONE
        }
        assert outcomes in ({"delivered"}, {"held"})


KILLABLE = """
import asyncio, sys
from datetime import datetime
from alerts.escalation import Escalator
from alerts.clock import ManualClock
from alerts.routing import Channels
from storage.db import open_pool

async def main():
    pool = await open_pool(sys.argv[1], min_size=1, max_size=2)
    clock = ManualClock(datetime.fromisoformat(sys.argv[2]))
    await Escalator(pool, clock=clock, channels=Channels(sms=True)).escalate_due()

asyncio.run(main())
"""


async def test_killing_the_escalator_mid_step_neither_loses_nor_repeats_it(
    pg_dsn: str, pool: asyncpg.Pool
) -> None:
    await seed(pool)
    alert = await raise_alert(pool)
    clock = ManualClock()
    escalator = Escalator(pool, clock=clock, channels=Channels(sms=True))
    await escalator.step()
    due = clock.advance(601)

    # Hold the offices table so the step stops half-way: after it has updated the alert,
    # before it has found the station head. Then kill the process doing it.
    blocker = await asyncpg.connect(pg_dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE offices IN ACCESS EXCLUSIVE MODE")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLABLE,
        pg_dsn,
        due.isoformat(),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:

        async def stuck_half_way() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND state = 'active' AND backend_xid IS NOT NULL AND pid <> $1)",
                    blocker.get_server_pid(),
                )
            )

        await until(stuck_half_way, "the escalator never reached the locked table")
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), BOUND) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await tx.rollback()
        await blocker.close()

    # The half-done step left nothing behind ...
    assert await pool.fetchval("SELECT escalation FROM alerts WHERE id = $1", alert) == 0
    assert "escalated" not in [e["action"] for e in await timeline(pool, alert)]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE channel = 'sms'") == 1

    # ... and after the restart it is taken exactly once.
    restarted = Escalator(pool, clock=clock, channels=Channels(sms=True))
    assert await restarted.step() == 1
    assert await restarted.step() == 0
    assert await pool.fetchval("SELECT escalation FROM alerts WHERE id = $1", alert) == 1
    actions = [e["action"] for e in await timeline(pool, alert)]
    assert actions.count("escalated") == 1
    phones = await pool.fetch("SELECT recipient FROM outbox WHERE channel = 'sms' ORDER BY id")
    assert [r["recipient"] for r in phones] == [OFFICER_PHONE, HEAD_PHONE]


async def test_a_restarted_loop_takes_each_step_once(pool: asyncpg.Pool) -> None:
    """Stopping and starting the running loop between and during steps."""
    await seed(pool)
    alert = await raise_alert(pool)
    clock = ManualClock()
    policy = EscalationPolicy(after_s={"critical": 60, "high": 60, "normal": 60, "low": 0})
    for _ in range(3):
        escalator = Escalator(pool, clock=clock, policy=policy, poll_interval=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(escalator.run(stop))
        await asyncio.sleep(0.2)
        clock.advance(60)
        escalator.wake()
        await asyncio.sleep(0.2)
        task.cancel()  # no clean stop: as if killed
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await pool.fetchval("SELECT escalation FROM alerts WHERE id = $1", alert) == 2
    actions = [e["action"] for e in await timeline(pool, alert)]
    assert actions.count("routed") == 1 and actions.count("escalated") == 2


def test_alerting_settings_are_checked() -> None:
    env = {
        "FENCEWATCH_ESCALATE_AFTER": "critical=60,high=120",
        "FENCEWATCH_NOTIFY_LIMIT": "5",
        "FENCEWATCH_REMIND_TERM_DAYS": "1,30,7",
    }
    s = Settings.from_env(env)
    assert s.escalate_after_s == {"critical": 60, "high": 120, "normal": 1800, "low": 0}
    assert s.notify_limit == 5 and s.remind_term_days == (30, 7, 1)
    with pytest.raises(ConfigError, match="FENCEWATCH_ESCALATE_AFTER"):
        Settings.from_env({"FENCEWATCH_ESCALATE_AFTER": "urgent=5"})
    with pytest.raises(ConfigError, match="FENCEWATCH_REPORT_DAY"):
        Settings.from_env({"FENCEWATCH_REPORT_DAY": "31"})
    from alerts.sms import SmsSender

    with pytest.raises(ConfigError, match="FENCEWATCH_SMS_SECRET"):
        SmsSender("https://sms.example.org/send", "")


async def test_a_protected_person_is_warned_at_once_and_without_a_gateway_that_is_said(
    pool: asyncpg.Pool,
) -> None:
    await seed(pool)
    victim = "+8613900000017"
    await pool.execute(
        "INSERT INTO protected_persons (id, supervisee_id, device_id, owntracks, sms)"
        " VALUES ('PP1', 'P1', 'V1', 'victim/phone', $1)",
        victim,
    )
    detail = {**POSITION, "order": "PP1", "distance_m": 500.0, "protected": {"lat": 28.4}}
    warned = await raise_alert(pool, kind="protected_proximity", detail=detail)
    await Escalator(pool, clock=ManualClock(), channels=Channels(sms=True)).route_new()
    rows = await pool.fetch(
        "SELECT recipient, payload FROM outbox WHERE channel = 'sms' ORDER BY id"
    )
    # The warning first, to them, saying neither who nor where; then the officer's SMS.
    assert [r["recipient"] for r in rows] == [victim, OFFICER_PHONE]
    warning = rows[0]["payload"]
    assert warning["kind"] == "warning" and warning["throttle"] is False
    assert "500米" in warning["text"] and "张" not in warning["text"]
    steps = await timeline(pool, warned)
    assert [e["detail"] for e in steps if e["action"] == "warned"] == [{"order": "PP1"}]

    unwarned = await raise_alert(pool, kind="protected_proximity", detail=detail)
    await Escalator(pool, clock=ManualClock(), channels=Channels()).route_new()
    [skipped] = [e["detail"] for e in await timeline(pool, unwarned) if e["action"] == "warned"]
    assert "no SMS gateway" in skipped["skipped"]


async def test_a_protected_person_is_warned_again_when_the_danger_comes_back_not_more_often(
    pool: asyncpg.Pool, redis: Redis
) -> None:
    await seed(pool)
    victim = "+8613900000018"
    await pool.execute(
        "INSERT INTO protected_persons (id, supervisee_id, device_id, owntracks, sms)"
        " VALUES ('PP1', 'P1', 'V1', 'victim/phone', $1)",
        victim,
    )
    detail = {**POSITION, "order": "PP1", "distance_m": 500.0, "protected": {"lat": 28.4}}
    key = f"protected_proximity:PP1:{uuid.uuid4()}"
    ts = int(datetime.now(UTC).timestamp() * 1000)

    async def verdict(action: str, at_s: int) -> None:
        v = Verdict(action, "protected_proximity", "P1", "T1", ts + at_s * 1000, key, False, detail)
        async with pool.acquire() as conn, conn.transaction():
            await apply(conn, [v])

    async def warnings(n: int) -> list[dict[str, Any]]:
        await until(lambda: asyncio.sleep(0, len(gateway.to(victim)) >= n), f"{n} warnings")
        await asyncio.sleep(1.0)  # a few passes more: nothing else comes
        return gateway.to(victim)

    clock = ManualClock()
    gateway = SmsGateway(free_port())
    with gateway.listening():
        async with alerting(pool, redis, settings(gateway.port), clock=clock):
            await verdict("raise", 0)
            assert len(await warnings(1)) == 1
            # The supervisee walks off and comes back three minutes later: the same
            # episode. The protected person was warned a moment ago: not yet again…
            await verdict("clear", 60)
            await verdict("reopen", 240)
            assert len(await warnings(1)) == 1
            # …but once ten minutes have passed since, they are, the supervisee still near.
            clock.advance(601)
            assert len(await warnings(2)) == 2
            # The officer closes the case; the supervisee comes back again later: the case
            # reopens, and after ten minutes more they are warned a third time.
            await pool.execute("UPDATE alerts SET status = 'resolved' WHERE key = $1", key)
            await verdict("clear", 900)
            await verdict("reopen", 1000)
            assert len(await warnings(2)) == 2
            clock.advance(600)
            third = await warnings(3)
            assert len(third) == 3
            # Gone for good before the next ten minutes are up: no fourth.
            await verdict("clear", 1300)
            await verdict("reopen", 1400)
            await verdict("clear", 1500)
            clock.advance(600)
            assert len(await warnings(3)) == 3
    assert all("500米" in m["text"] and "张" not in m["text"] for m in third)
    alert = await pool.fetchval("SELECT id FROM alerts WHERE key = $1", key)
    steps = [e["detail"] for e in await timeline(pool, alert) if e["action"] == "warned"]
    assert steps == [{"order": "PP1"}, *[{"order": "PP1", "again": True}] * 2]
    # The officer heard of the reopened case too.
    assert len(gateway.to(OFFICER_PHONE)) == 2


async def test_a_gathering_reaches_every_office_of_its_people_once_and_goes_up_in_each(
    pool: asyncpg.Pool,
) -> None:
    await seed(pool, people=2)  # P1 and P2 at station S1, officer O1
    await pool.execute(
        "INSERT INTO offices (id, name, kind, parent_id) VALUES"
        " ('K2', '青田县司法局', 'county', 'C'), ('S2', '鹤城司法所', 'station', 'K2');"
        " INSERT INTO officers (id, name, office_id, phone, role) VALUES"
        " ('O2', '陈警官', 'S2', '13800000004', 'officer'),"
        " ('H2', '周所长', 'S2', '13800000005', 'head');"
        " INSERT INTO supervisees (id, name, office_id, officer_id, jurisdiction)"
        " VALUES ('P3', '王3', 'S2', 'O2', ARRAY['331102'])"
    )
    detail = {**POSITION, "people": ["P1", "P2", "P3"], "radius_m": 100.0}
    alert = await raise_alert(pool, kind="gathering", detail=detail)
    clock = ManualClock()
    escalator = Escalator(pool, clock=clock, channels=Channels(sms=True))
    await escalator.route_new()

    async def told() -> list[tuple[str, str]]:
        rows = await pool.fetch(
            "SELECT recipient, payload FROM outbox WHERE channel = 'sms' ORDER BY id"
        )
        return [(r["recipient"], r["payload"]["text"]) for r in rows]

    # Each station's officer, once: O1 has two of the three.
    first = await told()
    assert sorted(phone for phone, _ in first) == [OFFICER_PHONE, "13800000004"]
    for _, text in first:
        assert "3名社区矫正对象聚集：张1（P1）、张2（P2）、王3（P3）" in text, text
    # Unacknowledged: it goes up in both stations — each head once.
    clock.advance(24 * 3600)
    await escalator.escalate_due()
    up = [phone for phone, _ in (await told())[len(first) :]]
    assert sorted(up) == [HEAD_PHONE, "13800000005"]
    steps = [e["detail"] for e in await timeline(pool, alert) if e["action"] == "escalated"]
    assert sorted(steps[0]["to"]) == ["officer:H1", "officer:H2"]


async def test_one_who_joins_a_gathering_has_their_office_told_once_and_nobody_again(
    pool: asyncpg.Pool,
) -> None:
    from alerts.record import list_alerts

    await seed(pool, people=3)  # P1–P3 at station S1, officer O1
    await pool.execute(
        "INSERT INTO offices (id, name, kind, parent_id)"
        " VALUES ('S3', '水阁司法所', 'station', 'K1');"
        " INSERT INTO officers (id, name, office_id, phone, role) VALUES"
        " ('O3', '李警官', 'S3', '13800000006', 'officer'),"
        " ('H3', '吴所长', 'S3', '13800000007', 'head');"
        " INSERT INTO supervisees (id, name, office_id, officer_id, jurisdiction)"
        " VALUES ('P4', '赵4', 'S3', 'O3', ARRAY['331102']),"
        " ('P5', '张5', 'S1', 'O1', ARRAY['331102'])"
    )
    key = "gathering:P1:0"
    ts = int(datetime.now(UTC).timestamp() * 1000)
    detail = {**POSITION, "people": ["P1", "P2", "P3"], "radius_m": 100.0, "positions": []}
    clock = ManualClock()
    escalator = Escalator(pool, clock=clock, channels=Channels(sms=True))

    async def verdict(action: str, detail: dict[str, Any]) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await apply(conn, [Verdict(action, "gathering", "P1", "T1", ts, key, False, detail)])

    def joined(*people: str) -> dict[str, Any]:
        listed = sorted({*detail["people"], *people})
        where = [{"supervisee": p, "lat": 28.4517, "lon": 119.9127} for p in people]
        return {"people": listed, "joined": list(people), "positions": where}

    async def told() -> list[tuple[str, str]]:
        rows = await pool.fetch("SELECT recipient, payload FROM outbox WHERE channel = 'sms'")
        return [(r["recipient"], r["payload"]["text"]) for r in rows]

    await verdict("raise", detail)
    await escalator.step()
    assert [phone for phone, _ in await told()] == [OFFICER_PHONE]
    # S3 has nobody there yet: it does not see the gathering.
    async with pool.acquire() as conn:
        assert (
            await list_alerts(
                conn, ["S3"], supervisee=None, type=None, status=None, before=None, limit=10
            )
            == []
        )
    # P4 of station S3 is confirmed among them: the same alert, now listing four; S3's
    # officer is told at once, naming all four; O1 is not told again.
    await verdict("join", joined("P4"))
    await verdict("join", joined("P4"))  # a restart judging it again: nothing more
    await escalator.step()
    later = (await told())[1:]
    assert [phone for phone, _ in later] == ["13800000006"]
    assert "4名社区矫正对象聚集" in later[0][1] and "赵4（P4）" in later[0][1]
    async with pool.acquire() as conn:
        [row] = await list_alerts(
            conn, ["S3"], supervisee=None, type=None, status=None, before=None, limit=10
        )
    assert row["key"] == key and row["detail"]["people"] == ["P1", "P2", "P3", "P4"]
    alert = row["id"]
    steps = [(e["action"], e["detail"]) for e in await timeline(pool, alert)]
    assert [d["people"] for a, d in steps if a == "joined"] == [["P4"]]
    assert [d["to"] for a, d in steps if a == "routed_joined"] == [["officer:O3"]]
    # P5, of S1 whose officer knows already: nobody is told.
    detail["people"] = ["P1", "P2", "P3", "P4"]
    await verdict("join", joined("P5"))
    await escalator.step()
    assert len(await told()) == 2
    # Unacknowledged, it goes up in both stations: S3's head too, each once.
    clock.advance(24 * 3600)
    await escalator.escalate_due()
    up = [phone for phone, _ in (await told())[2:]]
    assert sorted(up) == [HEAD_PHONE, "13800000007"]
