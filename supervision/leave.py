"""Leave (外出) approval rules, as the 社区矫正法实施办法 is practised.

The figures could not be checked against the official text here, so they are configurable
defaults: up to 7 days a justice station may approve; longer, the county bureau; at most
30 days per approval; over 30 days, or over 30 days in total within two months, needs the
level above the county. A recurring cross-county permit (经常性跨市县活动) names its places
and weekly hours and lasts at most 6 months.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

DAY_MS = 86_400_000
LEVELS = ("station", "county", "city")  # 司法所, 县级社区矫正机构, 市级社区矫正机构
LEVEL_NAMES = {"station": "司法所", "county": "县级社区矫正机构", "city": "市级社区矫正机构"}


class LeaveRules(msgspec.Struct, frozen=True):
    station_max_days: int = 7
    approval_max_days: int = 30
    window_days: int = 60
    window_max_days: int = 30
    apply_ahead_days: int = 3
    permit_max_days: int = 183


DEFAULT_RULES = LeaveRules()


class Problem(msgspec.Struct, frozen=True):
    code: str
    message: str  # English, for integrators
    message_zh: str  # 中文, for the console


class LeaveCheck(msgspec.Struct, frozen=True):
    days: int
    level: str  # the lowest level allowed to approve it
    refusals: list[Problem]  # the request cannot be approved as it is
    warnings: list[Problem]  # it can, but someone should know


def days_of(start: int, end: int) -> int:
    return max(1, math.ceil((end - start) / DAY_MS))


def check_leave(
    start: int,
    end: int,
    *,
    applied_at: int,
    earlier: Sequence[tuple[int, int]] = (),
    approver_level: str | None = None,
    permit: bool = False,
    destinations: Sequence[str] = (),
    has_schedule: bool = False,
    rules: LeaveRules = DEFAULT_RULES,
) -> LeaveCheck:
    """Check one leave request; `earlier` are the person's other approved leaves."""
    refusals: list[Problem] = []
    warnings: list[Problem] = []
    if end <= start:
        refusals.append(Problem("order", "the leave ends before it starts", "结束时间早于开始时间"))
        return LeaveCheck(0, "station", refusals, warnings)
    days = days_of(start, end)
    if not destinations:
        refusals.append(Problem("destinations", "name the destination(s)", "请填写外出目的地"))
    if permit:
        level = "county"
        if days > rules.permit_max_days:
            refusals.append(
                Problem(
                    "permit_too_long",
                    f"a recurring permit lasts at most {rules.permit_max_days} days",
                    f"经常性跨市县活动批准期限最长不超过{rules.permit_max_days}天（六个月）",
                )
            )
        if not has_schedule:
            refusals.append(
                Problem(
                    "permit_schedule",
                    "a recurring permit names its weekly hours",
                    "经常性跨市县活动须写明每周活动时间",
                )
            )
    else:
        window_start = start - rules.window_days * DAY_MS
        in_window = sum(
            days_of(max(s, window_start), min(e, end))
            for s, e in earlier
            if e > window_start and s < end
        )
        if days <= rules.station_max_days:
            level = "station"
        elif days <= rules.approval_max_days:
            level = "county"
        else:
            level = "city"
        if days + in_window > rules.window_max_days:
            level = "city"
            warnings.append(
                Problem(
                    "window_total",
                    f"{days + in_window} days of leave within {rules.window_days} days",
                    f"两个月内累计外出{days + in_window}天，"
                    f"超过{rules.window_max_days}天，须报上一级审批",
                )
            )
        if start - applied_at < rules.apply_ahead_days * DAY_MS:
            warnings.append(
                Problem(
                    "short_notice",
                    f"applied less than {rules.apply_ahead_days} days ahead",
                    f"未提前{rules.apply_ahead_days}日申请",
                )
            )
    if approver_level is not None and LEVELS.index(approver_level) < LEVELS.index(level):
        refusals.append(
            Problem(
                "approver_level",
                f"{days} days of leave must be approved by the {level} level",
                f"外出{days}天，须由{LEVEL_NAMES[level]}批准",
            )
        )
    return LeaveCheck(days, level, refusals, warnings)
