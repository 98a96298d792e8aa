"""report.pdf: the bundle for people, in Chinese: who and what it covers, the map, the
alerts with every step and disposition, the rules in force, the fixes with their accuracy,
and how to check the bundle. Set in reportlab's built-in CID font (STSong-Light), which
PDF readers supply, so no font file is shipped or embedded."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from alerts.templates import DISPOSITION_ZH, SEVERITY_ZH, STATUS_ZH, TYPE_ZH, local_time
from duties.reports import LEVEL_ZH
from evidence import trackmap
from evidence.gather import Evidence
from geofence.model import Quality

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))

# Rows of the fix table in the PDF; a longer track is complete in track.csv.
MAX_FIX_ROWS = 2000
ZONE_STATE_ZH = {"in": "区域内", "out": "区域外", "uncertain": "不确定"}
LEAVE_STATUS_ZH = {
    "requested": "待审批",
    "approved": "已批准",
    "refused": "不予批准",
    "cancelled": "已撤销",
}
KIND_ZH = {"jurisdiction": "执行地", "exclusion": "禁入区域", "home": "居住地"}
ACTION_ZH = {
    "raised": "告警产生",
    "cleared": "条件解除",
    "reopened": "再次越界",
    "extended": "补传提前起始时间",
    "acknowledged": "签收",
    "resolved": "处置",
    "routed": "已分派",
    "escalated": "升级",
    "notified": "已通知",
    "command": "下发指令",
    "locate": "立即定位",
    "located": "定位回复",
    "held": "暂缓通知",
    "released": "恢复通知",
}
_WIDTH = A4[0] - 36 * mm

_BODY = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=13, wordWrap="CJK")
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=7.5, leading=10)
_TITLE = ParagraphStyle("title", parent=_BODY, fontSize=16, leading=22, spaceAfter=6)
_HEAD = ParagraphStyle("head", parent=_BODY, fontSize=12, leading=17, spaceBefore=10, spaceAfter=4)


def render(
    evidence: Evidence,
    about: Mapping[str, Any],
    files: Mapping[str, bytes],
    key_fingerprint: str,
    timezone: str,
) -> bytes:
    """`files` are the bundle's other files: their SHA-256 is printed, so the paper copy
    pins the data too."""

    def when(value: Any) -> str:
        return f"{local_time(value, timezone)}" if value is not None else "—"

    scope = evidence.scope
    person = evidence.person
    by = about["exported_by"]
    story: list[Flowable] = [
        Paragraph("社区矫正电子定位证据包", _TITLE),
        _pairs(
            [
                ("社区矫正对象", f"{person['name'] or '—'}（编号 {person['id']}）"),
                ("司法所 / 责任人", f"{person['office'] or '—'} / {person['officer'] or '—'}"),
                ("管理等级", LEVEL_ZH.get(person["level"], person["level"])),
                (
                    "证据范围",
                    f"告警 #{scope.alert}"
                    if scope.alert is not None
                    else "指定时段的全部定位与告警",
                ),
                ("时段", f"{when(scope.start)} 至 {when(scope.end)}（{timezone} 本地时间）"),
                ("导出人", f"{by['subject']}（{by['role'] or '命令行'}）"),
                ("导出时间", f"{about['exported_at']}（UTC）"),
                ("签名密钥指纹", key_fingerprint),
            ]
        ),
        Paragraph("轨迹与区域", _HEAD),
        trackmap.draw(evidence, _WIDTH, _WIDTH * 0.7, FONT, timezone),
        Paragraph(
            f"共 {len(evidence.fixes)} 个定位点；圆圈为定位精度半径（设备报告）。"
            "坐标为 WGS-84，底图不含在线地图数据。",
            _SMALL,
        ),
        Paragraph("告警与处置", _HEAD),
    ]
    if not evidence.alerts:
        story.append(Paragraph("该时段无告警。", _BODY))
    for alert in evidence.alerts:
        story += _alert(alert, when)
    story += [Paragraph("所适用的监管规则", _HEAD), *_rules(evidence, when)]
    story += [Paragraph("定位点明细", _HEAD), _fixes(evidence.fixes, when)]
    if len(evidence.fixes) > MAX_FIX_ROWS:
        story.append(
            Paragraph(
                f"此处列出前 {MAX_FIX_ROWS} 个定位点；全部 {len(evidence.fixes)} 个见 track.csv。",
                _SMALL,
            )
        )
    story += [
        Paragraph("完整性校验", _HEAD),
        Paragraph(
            "本证据包（zip）中的 manifest.json 列出每个文件的 SHA-256 与大小，并由本服务的"
            " Ed25519 密钥签名（manifest.sig）。校验：fencewatch evidence verify 证据包.zip"
            " --key 公钥文件或指纹；公钥可由 GET /api/v1/evidence/key 取得。"
            "下列为本报告以外各文件的 SHA-256：",
            _BODY,
        ),
        _table(
            [["文件", "SHA-256", "字节"]]
            + [[n, hashlib.sha256(d).hexdigest(), str(len(d))] for n, d in files.items()],
            [28 * mm, _WIDTH - 46 * mm, 18 * mm],
            small=True,
        ),
    ]
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title="社区矫正电子定位证据包",
        author="fencewatch",
        subject=f"supervisee {person['id']}",
    )
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return out.getvalue()


def _footer(canvas: Any, doc: Any) -> None:
    canvas.saveState()
    canvas.setFont(FONT, 7)
    canvas.drawRightString(A4[0] - 18 * mm, 9 * mm, f"第 {doc.page} 页")
    canvas.restoreState()


def _p(text: Any, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape("—" if text is None or text == "" else str(text)), style)


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float], small: bool = False) -> Table:
    style = _SMALL if small else _BODY
    table = Table(
        [[_p(c, style) for c in row] for row in rows], colWidths=list(widths), repeatRows=1
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e2e8f0")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _pairs(rows: Sequence[tuple[str, str]]) -> Table:
    table = Table([[_p(k), _p(v)] for k, v in rows], colWidths=[34 * mm, _WIDTH - 34 * mm])
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f1f5f9")),
            ]
        )
    )
    return table


def _alert(alert: Mapping[str, Any], when: Any) -> list[Flowable]:
    detail = alert["detail"] or {}
    zone = detail.get("zone_name") or detail.get("zone") or ""
    title = f"告警 #{alert['id']}：{TYPE_ZH.get(alert['type'], alert['type'])}"
    facts = [
        f"级别 {SEVERITY_ZH.get(alert['severity'], alert['severity'])}",
        f"状态 {STATUS_ZH.get(alert['status'], alert['status'])}",
        f"确认定位时间 {alert['ts']}",
        "仍在持续" if alert["active"] else f"解除于 {alert['cleared_at'] or '—'}",
    ]
    if zone:
        facts.append(f"区域 {zone}")
    if alert["disposition"]:
        facts.append(f"处置结果 {DISPOSITION_ZH.get(alert['disposition'], alert['disposition'])}")
    if isinstance(detail.get("lat"), int | float) and isinstance(detail.get("lon"), int | float):
        facts.append(f"位置 {detail['lat']:.6f},{detail['lon']:.6f}")
    rows: list[list[Any]] = [["时间", "操作人", "步骤", "处置结果 / 说明"]]
    for step in alert["timeline"]:
        d = step["detail"] or {}
        said = " ".join(
            str(v)
            for v in (
                DISPOSITION_ZH.get(d.get("disposition", ""), d.get("disposition")),
                d.get("note"),
            )
            if v
        )
        rows.append(
            [when(step["at"]), step["actor"], ACTION_ZH.get(step["action"], step["action"]), said]
        )
    return [
        Paragraph(escape(title), _BODY),
        Paragraph(escape("；".join(facts)), _SMALL),
        Spacer(1, 2),
        _table(rows, [36 * mm, 34 * mm, 28 * mm, _WIDTH - 98 * mm], small=True)
        if len(rows) > 1
        else Paragraph("无处理记录。", _SMALL),
        Spacer(1, 6),
    ]


def _rules(evidence: Evidence, when: Any) -> list[Flowable]:
    person = evidence.person
    names = {z["id"]: z["name"] or z["id"] for z in evidence.zones}
    zone_rows: list[list[Any]] = [["类型", "区域", "范围", "时段"]]
    for z in evidence.zones:
        kind = trackmap.zone_kind(evidence, z)
        schedule = "、".join(
            f"周{''.join(str(d) for d in w['days'])} {w['from']}–{w['to']}"
            for w in z["schedule"] or []
        )
        extent = f"半径 {z['radius']:g} 米" if z["radius"] is not None else "多边形"
        zone_rows.append(
            [
                KIND_ZH.get(kind, "外出目的地"),
                f"{z['name'] or ''}（{z['id']}）",
                extent,
                schedule or "全天",
            ]
        )
    out: list[Flowable] = [
        Paragraph(
            escape(
                f"执行地：{'、'.join(names.get(z, z) for z in person['jurisdiction']) or '—'}；"
                f"禁入区域：{'、'.join(names.get(z, z) for z in person['exclusion']) or '—'}；"
                f"居住地：{names.get(person['home'], person['home']) if person['home'] else '—'}。"
                "区域与管理等级为导出时的记录；时段开始以来的变更列于下表（详见 rules.json）。"
            ),
            _BODY,
        ),
        _table(zone_rows, [24 * mm, 60 * mm, 30 * mm, _WIDTH - 114 * mm], small=True),
        Spacer(1, 4),
    ]
    if evidence.leaves:
        rows: list[list[Any]] = [["外出", "起止", "目的地", "状态 / 批准人", "销假"]]
        for r in evidence.leaves:
            rows.append(
                [
                    r["id"],
                    f"{when(r['from'])} 至 {when(r['to'])}",
                    "、".join(names.get(z, z) for z in r["destinations"]),
                    f"{LEAVE_STATUS_ZH.get(r['status'], r['status'])} / {r['approved_by'] or '—'}",
                    when(r["returned_at"]),
                ]
            )
        out += [_table(rows, [22 * mm, 52 * mm, 36 * mm, 30 * mm, _WIDTH - 140 * mm], small=True)]
        out.append(Spacer(1, 4))
    if evidence.orders:
        rows = [["使用电子定位装置决定", "期限", "批准", "解除"]]
        for r in evidence.orders:
            rows.append(
                [
                    f"#{r['id']} {r['ground']}",
                    f"{r['starts_on']} 至 {r['current_end']}",
                    r["approved_by"],
                    f"{when(r['ended_at'])} {r['end_reason'] or ''}" if r["ended_at"] else "—",
                ]
            )
        out += [_table(rows, [60 * mm, 44 * mm, 30 * mm, _WIDTH - 134 * mm], small=True)]
        out.append(Spacer(1, 4))
    if evidence.rule_changes:
        rows = [["变更时间", "操作人", "操作", "对象"]]
        for r in evidence.rule_changes:
            rows.append([when(r["at"]), r["actor"], r["action"], r["object"]])
        out += [
            Paragraph("时段开始以来的规则变更", _SMALL),
            _table(rows, [36 * mm, 40 * mm, 30 * mm, _WIDTH - 106 * mm], small=True),
            Spacer(1, 4),
        ]
    else:
        out.append(Paragraph("时段开始以来无规则变更记录。", _SMALL))
    for r in evidence.heightened:
        out.append(
            Paragraph(
                escape(f"重点时段：{r['name']}，{when(r['from'])} 至 {when(r['to'])}（监管从严）"),
                _SMALL,
            )
        )
    return out


def _named(name: str | None, ident: str) -> str:
    return f"{name}（{ident}）" if name and name != ident else ident


def _fixes(fixes: Sequence[Any], when: Any) -> Table:
    rows: list[list[Any]] = [
        ["时间", "纬度", "经度", "精度(米)", "设备/序号", "来源", "区域", "质量标记"]
    ]
    for f in fixes[:MAX_FIX_ROWS]:
        rows.append(
            [
                when(f["ts"]),
                f"{f['lat']:.6f}",
                f"{f['lon']:.6f}",
                "未知" if f["acc"] is None else f"{f['acc']:g}",
                f"{f['device']}/{f['seq']}",
                f["src"] or "",
                ZONE_STATE_ZH.get(f["zone_state"], f["zone_state"] or ""),
                " ".join(Quality.names(f["quality"])),
            ]
        )
    widths = [32, 20, 21, 14, 24, 12, 14, 0]
    widths[-1] = _WIDTH / mm - sum(widths)
    # Plain strings, one line each, not paragraphs: laying out thousands of paragraphs
    # took most of a large export's time.
    table = Table(rows, colWidths=[w * mm for w in widths], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 7),
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e2e8f0")),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    return table
