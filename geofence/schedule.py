"""Weekly windows (curfews, time-windowed exclusion zones) in the roster's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from geofence.model import Window


class LocalClock:
    """Epoch ms → (ISO weekday, minute of day) in one time zone."""

    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)

    def weekday_minute(self, ts_ms: int) -> tuple[int, int]:
        local = datetime.fromtimestamp(ts_ms / 1000, self.tz)
        return local.isoweekday(), local.hour * 60 + local.minute


def is_active(windows: Sequence[Window], weekday: int, minute: int) -> bool:
    """True when (weekday, minute) falls in any window. A window whose end is not after its
    start runs past midnight into the next day, so it belongs to the day it starts on."""
    yesterday = 7 if weekday == 1 else weekday - 1
    for w in windows:
        if w.start_min < w.end_min:
            if weekday in w.days and w.start_min <= minute < w.end_min:
                return True
        elif (weekday in w.days and minute >= w.start_min) or (
            yesterday in w.days and minute < w.end_min
        ):
            return True
    return False
