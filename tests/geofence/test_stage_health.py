"""geofence.stages.health: device health from every report — no position fix (信号丢失),
low battery, strap tamper (防拆)."""

from __future__ import annotations

import pytest

from geofence.judge import Judged
from geofence.stages import health
from tests.geofence.engine_kit import Lane, judged, ms

NO_POSITION = [judged(t, position=False) for t in range(0, 720, 60)]


@pytest.mark.parametrize(
    ("fixes", "raised_at", "cleared_at"),
    [
        pytest.param(NO_POSITION, 600, None, id="ten minutes of reports without a position"),
        pytest.param(NO_POSITION[:10], None, None, id="nine minutes: not yet"),
        pytest.param([*NO_POSITION, judged(720)], 600, 720, id="a position ends it"),
        pytest.param(
            [*NO_POSITION[:9], judged(540), *NO_POSITION[10:]],
            None,
            None,
            id="a position in between starts the wait again",
        ),
    ],
)
def test_no_fix(fixes: list[Judged], raised_at: float | None, cleared_at: float | None) -> None:
    verdicts = Lane(health.no_fix).feed(*fixes)
    expected: list[tuple[str, int, int | None]] = []
    if raised_at is not None:
        expected.append(("raise", ms(raised_at), ms(0)))
    if cleared_at is not None:
        expected.append(("clear", ms(cleared_at), None))
    assert [(v.action, v.ts, v.detail.get("start")) for v in verdicts] == expected


def battery(level: int | None, charging: bool | None = None, t: float = 0) -> Judged:
    return judged(t, fix_fields={"batt": level, "chg": charging})


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        pytest.param([(25, None), (21, None)], ["", ""], id="above 20 %"),
        pytest.param([(25, None), (20, None)], ["", "raise"], id="at 20 %"),
        pytest.param([(20, None), (19, None), (15, None)], ["raise", "", ""], id="raised once"),
        pytest.param(
            [(20, None), (25, None), (29, None), (30, None)],
            ["raise", "", "", "clear"],
            id="cleared at 30 %: no flapping at the threshold",
        ),
        pytest.param([(20, None), (20, True)], ["raise", "clear"], id="charging clears it"),
        pytest.param([(15, True)], [""], id="low but charging"),
        pytest.param([(None, None), (None, True)], ["", ""], id="no battery reading"),
        pytest.param(
            [(20, None), (30, None), (20, None)],
            ["raise", "clear", "raise"],
            id="low again later: a new alert",
        ),
    ],
)
def test_low_battery(readings: list[tuple[int | None, bool | None]], expected: list[str]) -> None:
    fixes = [battery(level, charging, t * 60) for t, (level, charging) in enumerate(readings)]
    assert Lane(health.battery).actions(fixes) == expected


@pytest.mark.parametrize(
    ("straps", "expected"),
    [
        pytest.param(["ok", "ok"], ["", ""], id="intact"),
        pytest.param(["open"], ["raise"], id="opened: at once"),
        pytest.param(["cut"], ["raise"], id="cut: at once"),
        pytest.param(["open", "cut", "open"], ["raise", "", ""], id="raised once"),
        pytest.param(["open", "ok"], ["raise", "clear"], id="closed again: the episode ends"),
        pytest.param([None, "open"], ["", "raise"], id="no strap reading says nothing"),
    ],
)
def test_strap_tamper(straps: list[str | None], expected: list[str]) -> None:
    fixes = [judged(t * 30, fix_fields={"strap": s}) for t, s in enumerate(straps)]
    lane = Lane(health.strap)
    assert lane.actions(fixes) == expected
    raised = [v for v in lane.verdicts if v.action == "raise"]
    assert [v.detail["strap"] for v in raised] == [s for s in straps if s in ("open", "cut")][:1]
