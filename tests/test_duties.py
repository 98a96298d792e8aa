"""Issue 6's scheduled duties and the monthly assessment, on the real PostgreSQL and Redis:
the 25th-of-month reports made by apscheduler under a controlled clock and read back as
CSV and XLSX through the API, reminders once per stage, duty runs exactly once, and
violations and scores from alerts resolved as true violations."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import openpyxl
import pytest
from redis.asyncio import Redis

from alerts.clock import ManualClock
from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token
from duties.scheduler import Due, Duties
from fencewatch.config import Settings
from storage.db import Conn, open_pool
from tests.test_alerting import OFFICER_PHONE, SEED, raise_alert, until

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# Two stations of one county; 张1, 张2 and 张4 live under 紫金派出所, 张3 under 岩泉派出所
# (station S2), 张2 was released on 11-10, 张4 started on 11-03.
PEOPLE = [
    line.split()
    for line in (
        "P1 张1 S1 紫金派出所 331102199001011234 probation 2025-01-01 2026-06-30",
        "P2 张2 S1 紫金派出所 331102198505052345 parole    2024-11-10 2025-11-10",
        "P3 张3 S2 岩泉派出所 33110219950303345X control   2025-03-01 2026-03-01",
        "P4 张4 S1 紫金派出所 331102200002024567 probation 2025-11-03 2027-11-02",
    )
]


async def seed_people(pool: asyncpg.Pool) -> None:
    await pool.execute(SEED)
    await pool.execute(
        "INSERT INTO offices (id, name, kind, parent_id)"
        " VALUES ('S2', '岩泉司法所', 'station', 'K1')"
    )
    for pid, name, office, police, id_number, sentence, start, end in PEOPLE:
        await pool.execute(
            "INSERT INTO supervisees (id, name, office_id, officer_id, jurisdiction,"
            " police_station, id_number, sentence, term_start, term_end, status, level)"
            " VALUES ($1, $2, $3, 'O1', ARRAY['331102'], $4, $5, $6, $7, $8, $9, 'strict')",
            pid,
            name,
            office,
            police,
            id_number,
            sentence,
            date.fromisoformat(start),
            date.fromisoformat(end),
            "released" if pid == "P2" else "active",
        )
    await pool.execute("INSERT INTO devices (id) VALUES ('T1')")
    await pool.execute(
        "INSERT INTO device_assignments (device_id, supervisee_id) VALUES ('T1', 'P1')"
    )


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class Api:
    client: httpx.AsyncClient
    tokens: dict[str, str]

    async def get(self, path: str, who: str = "operator", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.client.get(path, params=params, headers=headers)

    async def send(self, method: str, path: str, who: str, body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.client.request(method, path, json=body, headers=headers)


@pytest.fixture
async def api(pool: asyncpg.Pool, redis_url: str) -> AsyncIterator[Api]:
    redis = Redis.from_url(redis_url)

    async def health() -> dict[str, bool]:
        return {}

    async def rules_changed(_: list[str] | None) -> None:
        return None

    app = create_app(ApiContext(pool, redis, health, rules_changed))
    await seed_people(pool)
    tokens = {
        "operator": await create_token(pool, "operator"),
        "auditor": await create_token(pool, "auditor"),
        "officer_s1": await create_token(pool, "officer", office="S1"),
        "officer_s2": await create_token(pool, "officer", office="S2"),
    }
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fencewatch") as c:
            yield Api(c, tokens)
    finally:
        await redis.aclose()


async def test_the_25th_reports_come_from_the_scheduler_and_open_as_csv_and_xlsx(
    pool: asyncpg.Pool, api: Api
) -> None:
    clock = ManualClock(local(2025, 11, 24, 12, 0))
    duties = Duties(pool, Settings(), clock=clock, tick_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(duties.run(stop))

    async def periods() -> list[str]:
        rows = await pool.fetch("SELECT DISTINCT period FROM reports ORDER BY period")
        return [r["period"] for r in rows]

    async def ran(period: str, duty: str = "monthly_reports") -> bool:
        return bool(
            await pool.fetchval(
                "SELECT EXISTS (SELECT FROM duty_runs WHERE duty = $1 AND period = $2)",
                duty,
                period,
            )
        )

    try:
        # Started after October's 25th went by unrun: that run is caught up at once.
        await until(lambda: ran("2025-10"), "October's missed run was not caught up")
        clock.set(local(2025, 11, 25, 7, 59))
        await until(lambda: ran("2025-11-25T07", "reminders"), "the scheduler stopped")
        assert await periods() == ["2025-10"]
        clock.set(local(2025, 11, 25, 8, 0))
        await until(lambda: ran("2025-11"), "November's reports were not made on the 25th")
    finally:
        stop.set()
        await task
    # A restart later that day repeats nothing.
    clock.set(local(2025, 11, 25, 9, 30))
    done = await Duties(pool, Settings(), clock=clock).run_due()
    assert done == [("reminders", "2025-11-25T09")]
    assert await periods() == ["2025-10", "2025-11"]
    assert await pool.fetchval("SELECT count(*) FROM duty_runs WHERE duty = 'monthly_reports'") == 2

    listed = (await api.get("/api/v1/reports", period="2025-11")).json()["items"]
    by_key = {(r["kind"], r["office"], r["police_station"]): r for r in listed}
    assert set(by_key) == {
        ("roster_reconciliation", "S1", "紫金派出所"),
        ("no_exit_list", "S1", "紫金派出所"),
        ("roster_reconciliation", "S2", "岩泉派出所"),
        ("no_exit_list", "S2", "岩泉派出所"),
    }
    roster = by_key[("roster_reconciliation", "S1", "紫金派出所")]
    assert roster["title"] == "紫金司法所（紫金派出所）2025年11月在册人数核对表"
    assert roster["summary"] == {"在册": 2, "本月入矫": 1, "本月解矫": 1}

    response = await api.get(roster["csv"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")  # a BOM, so Excel reads it as UTF-8
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert table[0][:3] == ["序号", "编号", "姓名"]
    assert [(r[1], r[2], r[-1]) for r in table[1:]] == [
        ("P1", "张1", "在册"),
        ("P2", "张2", "本月解矫"),
        ("P4", "张4", "在册（本月入矫）"),
    ]
    assert table[1][3:8] == ["331102199001011234", "缓刑", "2025-01-01", "2026-06-30", "严管"]
    assert table[1][8:10] == ["王警官", "T1"]

    no_exit = by_key[("no_exit_list", "S1", "紫金派出所")]
    response = await api.get(no_exit["xlsx"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = book.active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][0] == "紫金司法所（紫金派出所）2025年11月法定不批准出境人员报备表"
    assert "不准出境2人" in str(rows[1][0])
    assert rows[2] == [
        "序号",
        "姓名",
        "身份证号",
        "矫正类别",
        "矫正起始日期",
        "矫正结束日期",
        "不准出境期限至",
        "执行地司法所",
        "报备类型",
    ]
    assert [(r[1], r[2], r[-1]) for r in rows[3:]] == [
        ("张1", "331102199001011234", "续报"),
        ("张2", "331102198505052345", "撤销（解矫）"),
        ("张4", "331102200002024567", "新增"),
    ]

    # Scoped: the other station's officer sees only its own, and cannot fetch ours.
    theirs = (await api.get("/api/v1/reports", "officer_s2")).json()["items"]
    assert {r["office"] for r in theirs} == {"S2"}
    assert (await api.get(roster["csv"], "officer_s2")).status_code == 404
    assert (await api.get(roster["xlsx"], "auditor")).status_code == 200
    audited = await pool.fetch(
        "SELECT action, object FROM audit_log WHERE action LIKE 'report.download%' ORDER BY id"
    )
    assert [(a["action"], a["object"]) for a in audited] == [
        ("report.download.csv", f"report:{roster['id']}"),
        ("report.download.xlsx", f"report:{no_exit['id']}"),
        ("report.download.xlsx", f"report:{roster['id']}"),
    ]


async def test_reminders_go_once_per_stage(pool: asyncpg.Pool) -> None:
    await seed_people(pool)
    now = local(2025, 12, 1, 9, 0)
    # An order ending in 7 days, a term ending in 30, a leave due back this evening.
    await pool.execute(
        "INSERT INTO monitoring_orders (supervisee_id, ground, approved_by, starts_on, ends_on)"
        " VALUES ('P1', 'left_without_approval', '局长', '2025-09-08', '2025-12-08')"
    )
    await pool.execute("UPDATE supervisees SET term_end = '2025-12-31' WHERE id = 'P3'")
    await pool.execute(
        "INSERT INTO leaves (id, supervisee_id, starts_at, ends_at, destinations)"
        " VALUES ('L1', 'P4', $1, $2, '{}')",
        now - timedelta(days=3),
        now + timedelta(hours=9),
    )
    clock = ManualClock(now)
    duties = Duties(pool, Settings(sms_url="http://127.0.0.1:9/sms"), clock=clock)
    await duties.run_due()

    async def reminders() -> list[tuple[str, str, str]]:
        rows = await pool.fetch("SELECT kind, ref, stage FROM reminders ORDER BY id")
        return [(r["kind"], r["ref"], r["stage"]) for r in rows]

    order_id = str(await pool.fetchval("SELECT id FROM monitoring_orders"))
    first = [
        ("order_end", order_id, "7d:2025-12-08"),
        ("term_end", "P3", "30d:2025-12-31"),
        ("leave_return", "L1", f"due:{(now + timedelta(hours=9)).isoformat()}"),
    ]
    assert await reminders() == first
    sms = await pool.fetch("SELECT recipient, payload FROM outbox WHERE channel = 'sms'")
    assert {r["recipient"] for r in sms} == {OFFICER_PHONE}
    texts = [r["payload"]["text"] for r in sms]
    assert any("使用电子定位装置的期限将于7日后（2025-12-08）届满" in t for t in texts)
    assert any("防止超期解矫" in t for t in texts)
    assert any("督促其按时返回并销假" in t for t in texts)

    clock.advance(3600)  # the next hour looks again, and finds nothing new
    await duties.run_due()
    assert await reminders() == first
    clock.set(local(2025, 12, 2, 9, 0))  # the leave is now overdue
    await duties.run_due()
    clock.set(local(2025, 12, 7, 9, 0))  # one day before the order ends
    await duties.run_due()
    assert (await reminders())[3:] == [
        ("leave_overdue", "L1", f"overdue:{(now + timedelta(hours=9)).isoformat()}"),
        ("order_end", order_id, "1d:2025-12-08"),
    ]


class Flaky:
    """A duty that fails on its first run."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def latest(self, now: datetime) -> Due:
        return Due(now.strftime("%Y-%m-%d"), now.replace(hour=0, minute=0))

    async def run(self, conn: Conn, due: Due, now: datetime) -> dict[str, Any]:
        self.calls += 1
        await conn.execute(
            "INSERT INTO reminders (kind, ref, stage, supervisee_id, due_on, text)"
            " VALUES ('test', 'x', $1, 'P1', $2, 'work')",
            due.period,
            now.date(),
        )
        if self.calls == 1:
            raise RuntimeError("crashed half-way")
        return {"calls": self.calls}


async def test_a_duty_run_is_done_exactly_once(pool: asyncpg.Pool) -> None:
    await seed_people(pool)
    clock = ManualClock(local(2025, 11, 25, 10, 0))
    flaky = Flaky()
    duties = Duties(pool, Settings(), clock=clock, duties=[flaky])
    with pytest.raises(RuntimeError):
        await duties.run_due()
    # Neither the run nor its half-done work was kept ...
    assert await pool.fetchval("SELECT count(*) FROM duty_runs") == 0
    assert await pool.fetchval("SELECT count(*) FROM reminders") == 0
    # ... so it is done on the next try, once, however many schedulers race for it.
    others = [Duties(pool, Settings(), clock=clock, duties=[flaky]) for _ in range(3)]
    results = await asyncio.gather(*(d.run_due() for d in [duties, *others]))
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert await pool.fetchval("SELECT count(*) FROM reminders") == 1
    assert await pool.fetchval("SELECT detail FROM duty_runs") == {"calls": 2}


async def test_true_violations_become_the_monthly_assessment(pool: asyncpg.Pool, api: Api) -> None:
    await pool.execute("INSERT INTO devices (id) VALUES ('T3')")
    exit_alert = await raise_alert(pool, "P1", "jurisdiction_exit")
    tamper = await raise_alert(pool, "P1", "strap_tamper")
    false_alarm = await raise_alert(pool, "P1", "curfew_breach")
    other = await raise_alert(pool, "P3", "no_fix")

    async def resolve(alert: int, disposition: str, who: str = "officer_s1") -> None:
        # The breaches are still in progress (nobody came back): resolved knowingly.
        body = {"disposition": disposition, "note": "核实", "while_active": True}
        if disposition == "false_alarm":
            body["reason"] = "position_drift"
        r = await api.send("POST", f"/api/v1/alerts/{alert}/resolve", who, body)
        assert r.status_code == 200, r.text

    await resolve(exit_alert, "true_violation")
    await resolve(false_alarm, "false_alarm")
    # The centre makes tampering cost more from now on; recorded violations keep theirs.
    r = await api.send("PUT", "/api/v1/assessment/rules/strap_tamper", "operator", {"points": 15})
    assert r.status_code == 200 and r.json()["points"] == 15
    forbidden = await api.send("PUT", "/api/v1/assessment/rules/sos", "officer_s1", {"points": 1})
    assert forbidden.status_code == 403
    await resolve(tamper, "true_violation")
    await resolve(other, "true_violation", "officer_s2")

    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    mine = (await api.get("/api/v1/supervisees/P1/assessment", "officer_s1", month=month)).json()
    assert (mine["base"], mine["deductions"], mine["score"]) == (100, 20, 80)
    assert mine["by_type"] == {
        "jurisdiction_exit": {"count": 1, "points": 5},
        "strap_tamper": {"count": 1, "points": 15},
    }
    assert [v["alert"] for v in mine["violations"]] == [exit_alert, tamper]
    assert mine["violations"][0]["name_zh"] == "未经批准离开执行地"
    # Another month is clean; another station's person is out of scope.
    empty = await api.get("/api/v1/supervisees/P1/assessment", "officer_s1", month="2020-01")
    assert empty.json()["deductions"] == 0
    assert (await api.get("/api/v1/supervisees/P3/assessment", "officer_s1")).status_code == 404
    bad = await api.get("/api/v1/supervisees/P1/assessment", "officer_s1", month="2025-13")
    assert bad.status_code == 422

    county = (await api.get("/api/v1/offices/K1/assessment", "operator", month=month)).json()
    assert [(i["supervisee"], i["deductions"], i["score"]) for i in county["items"]] == [
        ("P1", 20, 80),
        ("P3", 1, 99),
        ("P4", 0, 100),
    ]
    assert (county["people"], county["with_violations"], county["deductions"]) == (3, 2, 21)
    station = (await api.get("/api/v1/offices/S2/assessment", "officer_s2")).json()
    assert [i["supervisee"] for i in station["items"]] == ["P3"]
    assert (await api.get("/api/v1/offices/S1/assessment", "officer_s2")).status_code == 404
