"""Monthly assessment (每月计分考评) from confirmed violations.

An alert resolved with the disposition `true_violation` becomes a violation record (table
`violations`, written by a database trigger in the resolving transaction) with the
deduction that `score_rules` gives its type at that moment. The month's score is
`BASE_SCORE` minus the month's deductions, months taken in local time (FENCEWATCH_TIMEZONE).

Default deductions (points; table `score_rules`, changed through
PUT /api/v1/assessment/rules/{type} — they are practice defaults, not law: provinces set
their own 计分考核 rules):

| alert type          | points | 中文                         |
|---------------------|-------:|------------------------------|
| jurisdiction_exit   | 5      | 未经批准离开执行地           |
| exclusion_enter     | 5      | 违反禁止令进入禁止区域       |
| curfew_breach       | 3      | 违反居家时段规定             |
| strap_tamper        | 10     | 擅自拆除、破坏电子定位装置   |
| device_offline      | 3      | 电子定位装置关机、失联       |
| no_fix              | 1      | 电子定位装置无定位信号       |
| low_battery         | 1      | 未按规定为电子定位装置充电   |
| sos                 | 0      | 紧急求助                     |
| * (any other type)  | 2      | 其他违反监督管理规定的行为   |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from storage.db import Conn

BASE_SCORE = 100
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def month_range(month: str, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar month, as aware datetimes."""
    if not MONTH.match(month):
        raise ValueError(f"month must look like 2025-11, got {month!r}")
    try:
        first = date.fromisoformat(f"{month}-01")
        following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    except ValueError:
        raise ValueError(f"no such month: {month!r}") from None
    tz = ZoneInfo(timezone)
    return datetime.combine(first, time(), tz), datetime.combine(following, time(), tz)


def current_month(now: datetime, timezone: str) -> str:
    return now.astimezone(ZoneInfo(timezone)).strftime("%Y-%m")


async def person_month(conn: Conn, supervisee: str, month: str, timezone: str) -> dict[str, Any]:
    start, end = month_range(month, timezone)
    rows = await conn.fetch(
        "SELECT v.alert_id, v.type, v.occurred_at, v.points, v.rule, v.recorded_at,"
        " COALESCE(r.name_zh, '') AS name_zh FROM violations v"
        " LEFT JOIN score_rules r ON r.alert_type = v.type"
        " WHERE v.supervisee_id = $1 AND v.occurred_at >= $2 AND v.occurred_at < $3"
        " ORDER BY v.occurred_at, v.id",
        supervisee,
        start,
        end,
    )
    by_type: dict[str, dict[str, int]] = {}
    for r in rows:
        entry = by_type.setdefault(r["type"], {"count": 0, "points": 0})
        entry["count"] += 1
        entry["points"] += r["points"]
    deductions = sum(r["points"] for r in rows)
    return {
        "supervisee": supervisee,
        "month": month,
        "base": BASE_SCORE,
        "deductions": deductions,
        "score": BASE_SCORE - deductions,
        "by_type": by_type,
        "violations": [dict(r) for r in rows],
    }


async def office_month(
    conn: Conn, offices: Sequence[str], month: str, timezone: str
) -> list[dict[str, Any]]:
    """One line per person of these offices who was active in the month or has a
    violation in it."""
    start, end = month_range(month, timezone)
    rows = await conn.fetch(
        "SELECT s.id AS supervisee, s.name, s.office_id AS office,"
        " count(v.id)::int AS violations, COALESCE(sum(v.points), 0)::int AS deductions"
        " FROM supervisees s LEFT JOIN violations v ON v.supervisee_id = s.id"
        "  AND v.occurred_at >= $2 AND v.occurred_at < $3"
        " WHERE s.office_id = ANY($1::text[])"
        " GROUP BY s.id, s.name, s.office_id, s.status"
        " HAVING s.status = 'active' OR count(v.id) > 0"
        " ORDER BY deductions DESC, s.id",
        list(offices),
        start,
        end,
    )
    return [{**dict(r), "score": BASE_SCORE - r["deductions"]} for r in rows]


async def rules(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT alert_type, points, name_zh, updated_by, updated_at FROM score_rules"
        " ORDER BY alert_type = '*', alert_type"
    )
    return [dict(r) for r in rows]
