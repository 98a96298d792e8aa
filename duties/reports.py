"""The reports of the 25th of each month, for each justice station and each police station
(派出所) its people live under (`supervisees.police_station`; blank = 未指定派出所):

- 在册人数核对表 (roster reconciliation): everyone on the roll this month — active, or
  released during it — with term, supervision level, responsible officer and devices, for
  the monthly count check with the police and the procuratorate;
- 法定不批准出境人员报备表 (no-exit list): the people who by law may not leave the
  country (出境入境管理法 Art. 12: 被判处刑罚尚未执行完毕), reported to the police, marked
  新增 (new this month), 续报 (still on the list) or 撤销 (released this month).

Each is stored in `reports` as CSV (UTF-8 with a BOM, so Excel opens it as Chinese) and
XLSX (openpyxl), produced inside the duty's transaction.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from storage.db import Conn

ROSTER, NO_EXIT = "roster_reconciliation", "no_exit_list"
KINDS = {ROSTER: "在册人数核对表", NO_EXIT: "法定不批准出境人员报备表"}
NO_POLICE_STATION = "未指定派出所"
LEVEL_ZH = {"strict": "严管", "normal": "普管", "lenient": "宽管"}
SENTENCE_ZH = {
    "control": "管制",
    "probation": "缓刑",
    "parole": "假释",
    "temporary_release": "暂予监外执行",
}

ROSTER_COLUMNS = [
    "序号",
    "编号",
    "姓名",
    "身份证号",
    "矫正类别",
    "矫正起始日期",
    "矫正结束日期",
    "监管等级",
    "责任矫正工作人员",
    "电子定位装置",
    "在册状态",
]
NO_EXIT_COLUMNS = [
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

_PEOPLE = """
SELECT s.id, s.name, s.id_number, s.sentence, s.level, s.term_start, s.term_end, s.status,
       s.office_id, COALESCE(s.police_station, '') AS police_station,
       COALESCE(f.name, s.office_id, '') AS office_name, o.name AS officer_name,
       ARRAY(SELECT a.device_id FROM device_assignments a
             WHERE a.supervisee_id = s.id AND a.until IS NULL ORDER BY a.device_id) AS devices
FROM supervisees s
LEFT JOIN offices f ON f.id = s.office_id
LEFT JOIN officers o ON o.id = s.officer_id
WHERE (s.status = 'active' OR (s.term_end IS NOT NULL AND s.term_end >= $1))
  AND (s.term_start IS NULL OR s.term_start < $2)
ORDER BY s.office_id NULLS LAST, police_station, s.id
"""


def _d(value: date | None) -> str:
    return value.isoformat() if value else ""


def _sentence(value: str | None) -> str:
    return SENTENCE_ZH.get(value or "", value or "")


def _released_in(p: Any, end: date) -> bool:
    """Released by the end of the month (the query leaves out those released before it)."""
    return bool(p["status"] != "active" and p["term_end"] is not None and p["term_end"] < end)


def _roster_row(n: int, p: Any, start: date, end: date) -> list[str]:
    if _released_in(p, end):
        state = "本月解矫"
    elif p["term_start"] is not None and start <= p["term_start"] < end:
        state = "在册（本月入矫）"
    else:
        state = "在册"
    return [
        str(n),
        p["id"],
        p["name"],
        p["id_number"] or "",
        _sentence(p["sentence"]),
        _d(p["term_start"]),
        _d(p["term_end"]),
        LEVEL_ZH.get(p["level"], p["level"]),
        p["officer_name"] or "",
        "、".join(p["devices"]),
        state,
    ]


def _no_exit_row(n: int, p: Any, start: date, end: date) -> list[str]:
    if _released_in(p, end):
        kind = "撤销（解矫）"
    elif p["term_start"] is not None and start <= p["term_start"] < end:
        kind = "新增"
    else:
        kind = "续报"
    return [
        str(n),
        p["name"],
        p["id_number"] or "",
        _sentence(p["sentence"]),
        _d(p["term_start"]),
        _d(p["term_end"]),
        _d(p["term_end"]),
        p["office_name"],
        kind,
    ]


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def render_xlsx(
    title: str,
    subtitle: str,
    sheet: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
) -> bytes:
    """Title in row 1, what and when in row 2, the table's header in row 3."""
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.title = sheet[:31]
    width = len(columns)
    ws.append([title])
    ws.append([subtitle])
    ws.append(list(columns))
    for row in rows:
        ws.append(list(row))
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
    ws["A1"].font = Font(bold=True, size=14)
    ws["A1"].alignment = Alignment(horizontal="center")
    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for cell in ws[3]:
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(horizontal="center")
    for i, name in enumerate(columns, start=1):
        longest = max([len(name), *(len(str(r[i - 1])) for r in rows)])
        ws.column_dimensions[get_column_letter(i)].width = min(40, 4 + longest * 1.6)
    ws.freeze_panes = "A4"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _render(
    title: str, subtitle: str, sheet: str, columns: list[str], rows: list[list[str]]
) -> tuple[bytes, bytes]:
    return render_csv(columns, rows), render_xlsx(title, subtitle, sheet, columns, rows)


def month_bounds(period: str) -> tuple[date, date]:
    start = date.fromisoformat(f"{period}-01")
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, end


async def produce(conn: Conn, *, period: str, as_of: datetime, tz: str) -> dict[str, Any]:
    """Make and store the month's reports; returns counts for the duty's record."""
    start, end = month_bounds(period)
    people = await conn.fetch(_PEOPLE, start, end)
    groups: dict[tuple[str | None, str], list[Any]] = defaultdict(list)
    for p in people:
        groups[(p["office_id"], p["police_station"])].append(p)
    local = as_of.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    made = 0
    for (office, police), members in groups.items():
        office_name = members[0]["office_name"] or "未指定司法所"
        police_name = police or NO_POLICE_STATION
        for kind, columns, make_row in (
            (ROSTER, ROSTER_COLUMNS, _roster_row),
            (NO_EXIT, NO_EXIT_COLUMNS, _no_exit_row),
        ):
            rows = [make_row(n, p, start, end) for n, p in enumerate(members, start=1)]
            title = f"{office_name}（{police_name}）{period[:4]}年{period[5:]}月{KINDS[kind]}"
            if kind == ROSTER:
                summary = {
                    "在册": sum(1 for r in rows if r[-1].startswith("在册")),
                    "本月入矫": sum(1 for r in rows if r[-1] == "在册（本月入矫）"),
                    "本月解矫": sum(1 for r in rows if r[-1] == "本月解矫"),
                }
            else:
                summary = {
                    "不准出境": sum(1 for r in rows if not r[-1].startswith("撤销")),
                    "新增": sum(1 for r in rows if r[-1] == "新增"),
                    "撤销": sum(1 for r in rows if r[-1].startswith("撤销")),
                }
            counts = "，".join(f"{k}{v}人" for k, v in summary.items())
            subtitle = f"司法所：{office_name}　派出所：{police_name}　截至：{local}　{counts}"
            # Seconds of CPU for a large station: off the event loop, so ingest goes on.
            csv_bytes, xlsx_bytes = await asyncio.to_thread(
                _render, title, subtitle, KINDS[kind].removesuffix("表"), columns, rows
            )
            await conn.execute(
                "INSERT INTO reports (kind, period, office_id, police_station, title, as_of,"
                " rows, summary, csv, xlsx) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                " $8::text::jsonb, $9, $10)"
                " ON CONFLICT (kind, period, COALESCE(office_id, ''), police_station)"
                " DO NOTHING",
                kind,
                period,
                office,
                police,
                title,
                as_of,
                len(rows),
                msgspec.json.encode(summary).decode(),
                csv_bytes,
                xlsx_bytes,
            )
            made += 1
    return {"reports": made, "people": len(people), "groups": len(groups)}
