"""Message texts in Chinese: SMS and e-mail for alerts, escalations, storm summaries and
reminders, and the words a device shows with a command.

Times are local (Asia/Shanghai by default) and say so; places are WGS-84 lat/lon plus the
name of the zone concerned, as officers read them on a map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import msgspec

TYPE_ZH = {
    "jurisdiction_exit": "越界（擅自离开执行地）",
    "exclusion_enter": "进入禁止区域（违反禁止令）",
    "curfew_breach": "违反居家时段规定",
    "contact": "接触禁止接触的人（违反禁止令）",
    "gathering": "多名社区矫正对象聚集",
    "protected_proximity": "接近被保护人（违反禁止令）",
    "device_offline": "设备离线（失联/关机）",
    "no_fix": "无定位信号",
    "low_battery": "设备电量低",
    "strap_tamper": "防拆告警（腕带被打开或剪断）",
    "sos": "紧急求助（SOS）",
    "engine_fault": "系统无法判定定位数据（需核查规则）",
}
DISPOSITION_ZH = {
    "true_violation": "属实违规",
    "false_alarm": "误报",
    "approved_absence": "经批准外出",
    "equipment_fault": "设备故障",
}
STATUS_ZH = {"open": "待签收", "acknowledged": "已签收", "resolved": "已处置"}
SEVERITY_ZH = {"critical": "紧急", "high": "重要", "normal": "一般", "low": "提示"}
LEVEL_ZH = {0: "责任矫正工作人员", 1: "司法所负责人", 2: "县级社区矫正机构"}
EVENT_ZH = {"raised": "新告警", "escalated": "告警升级", "joined": "聚集新增人员"}
PREFIX = "【社区矫正监管】"

RETURN_NOW_TEXT = {
    "jurisdiction_exit": "您已离开执行地，责令立即返回！",
    "exclusion_enter": "您已进入禁止进入的区域，责令立即离开并返回！",
}
RETURN_NOW_DEFAULT = "社区矫正机构责令您立即返回！"


class AlertLike(Protocol):
    """An alert row (asyncpg.Record) or a dict with its columns."""

    def __getitem__(self, key: str, /) -> Any: ...


class Place(msgspec.Struct, frozen=True):
    lat: float | None = None
    lon: float | None = None
    zone: str = ""  # the zone concerned, by name: the 执行地, the exclusion zone, home
    note: str = ""  # e.g. "最后位置" for a device fault

    def zh(self) -> str:
        parts = []
        if self.zone:
            parts.append(self.zone)
        if self.lat is not None and self.lon is not None:
            parts.append(f"{self.note or '位置'} {self.lat:.5f},{self.lon:.5f}")
        return "，".join(parts) if parts else "位置不详"


def type_zh(alert_type: str) -> str:
    return TYPE_ZH.get(alert_type, alert_type)


def local_time(value: datetime, timezone: str) -> str:
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _who(name: str, supervisee: str) -> str:
    return f"{name}（{supervisee}）" if name else supervisee


class Notice(msgspec.Struct, frozen=True):
    """What a notification of a new or escalated alert says besides the alert itself."""

    name: str  # the person's name; "" when not on record
    place: Place
    timezone: str
    level: int  # who is told (LEVEL_ZH)
    event: str  # raised | escalated | joined
    overdue_s: int | None = None  # escalated: how long it has waited for 签收
    # A gathering's people, (name, id) each: every office told reads who of theirs is in it.
    people: tuple[tuple[str, str], ...] = ()


def alert_text(alert: AlertLike, notice: Notice) -> str:
    """One SMS for a new or escalated alert."""
    name, place, level, event = notice.name, notice.place, notice.level, notice.event
    when = local_time(alert["ts"], notice.timezone)
    severity = SEVERITY_ZH.get(alert["severity"], alert["severity"])
    head = f"{PREFIX}{EVENT_ZH.get(event, '告警')}（{severity}）"
    late = "（补传数据发现的既往违规）" if alert["late"] else ""
    what = f"社区矫正对象{_who(name, alert['supervisee_id'])}{type_zh(alert['type'])}"
    if notice.people:
        listed = "、".join(_who(n, sid) for n, sid in notice.people)
        what = f"{len(notice.people)}名社区矫正对象聚集：{listed}"
    body = f"{what}{late}，{place.zh()}，时间{when}（北京时间）。"
    if event == "escalated":
        minutes = max(1, round((notice.overdue_s or 0) / 60))
        tail = f"该告警已{minutes}分钟未签收，现报{LEVEL_ZH.get(level, '上级')}，请立即督办。"
    else:
        tail = "请立即核查处置并在平台签收。"
    return f"{head}{body}{tail}告警编号{alert['id']}。"


def alert_email(alert: AlertLike, notice: Notice) -> tuple[str, str]:
    """(subject, body) of the e-mail for a new or escalated alert."""
    name, place, level, event = notice.name, notice.place, notice.level, notice.event
    text = alert_text(alert, notice)
    subject = (
        f"{EVENT_ZH.get(event, '告警')}：{_who(name, alert['supervisee_id'])}"
        f"{type_zh(alert['type'])}（告警编号{alert['id']}）"
    )
    lines = [
        text.removeprefix(PREFIX),
        "",
        f"告警类型：{type_zh(alert['type'])}",
        f"严重程度：{SEVERITY_ZH.get(alert['severity'], alert['severity'])}",
        f"社区矫正对象：{_who(name, alert['supervisee_id'])}",
        f"设备：{alert['device_id']}",
        f"地点：{place.zh()}",
        f"时间：{local_time(alert['ts'], notice.timezone)}（北京时间）",
        f"通知级别：{LEVEL_ZH.get(level, level)}",
        "",
        "本邮件由 fencewatch 自动发送，请勿直接回复。",
    ]
    return subject, "\n".join(lines)


def summary_text(
    *,
    name: str,
    supervisee: str,
    counts: Mapping[str, int],
    first: datetime,
    last: datetime,
    timezone: str,
) -> str:
    """One message standing for several held back by the rate limit (a storm)."""
    total = sum(counts.values())
    kinds = "、".join(f"{type_zh(t)}{n}条" for t, n in sorted(counts.items()))
    return (
        f"{PREFIX}告警汇总：社区矫正对象{_who(name, supervisee)}在"
        f"{local_time(first, timezone)}至{local_time(last, timezone)}（北京时间）"
        f"另有{total}条通知未逐条发送（{kinds}），告警记录均已保存，请登录监控平台查看处置。"
    )


def reminder_text(kind: str, *, name: str, supervisee: str, due: str, days: int) -> str:
    who = f"社区矫正对象{_who(name, supervisee)}"
    when = "今日" if days == 0 else f"{days}日后（{due}）"
    if kind == "order_end":
        what = f"使用电子定位装置的期限将于{when}届满，请及时评估是否延长或解除。"
    elif kind == "term_end":
        what = f"社区矫正期限将于{when}届满，请及时办理解除矫正手续，防止超期解矫。"
    elif kind == "leave_return":
        what = f"外出请假将于{when}到期，请督促其按时返回并销假。"
    elif kind == "leave_overdue":
        what = f"外出请假已于{due}到期，尚未销假，请立即核查。"
    else:
        what = f"{kind}：{due}"
    return f"{PREFIX}提醒：{who}{what}"


def protected_warning_text(distance_m: float) -> str:
    """The warning to a protected person (被保护人): that someone an order keeps from them
    is near — never who, nor where they are."""
    return (
        f"{PREFIX}安全提醒：受禁止令约束、不得接近您的人员目前可能在您约{distance_m:.0f}米"
        "范围内。请留意周围，尽量前往人多的地方；如遇危险请立即拨打110。"
    )


def command_default_text(command: str, alert_type: str | None) -> str | None:
    if command == "return_now":
        return RETURN_NOW_TEXT.get(alert_type or "", RETURN_NOW_DEFAULT)
    if command == "vibrate":
        return None
    return None


def recipients_zh(names: Sequence[str]) -> str:
    return "、".join(names) if names else "（无联系人）"
