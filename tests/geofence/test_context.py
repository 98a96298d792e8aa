"""geofence.context: one breach is one alert, whatever the order the evidence comes in.

Each case is what the rule stages tell the context, in order — a breach confirmed
(`Open`), the device surely back (`Close`), a late track's unconfirmed streak (`Streak`) —
and what the officer gets: (action, the episode's start as in its key, the start its
detail shows), seconds from T0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pytest

from geofence.confirm import CLEAR, PENDING, Confirm
from geofence.context import StepContext
from geofence.model import Verdict
from geofence.state import EngineState
from tests.geofence.engine_kit import DEVICE, PERSON, POLICY, ms
from tests.kit import T0

RULE = TYPE = "jurisdiction_exit"
PHONE = "P1"  # the person's second device


class Open(NamedTuple):
    start_s: float
    ts_s: float
    device: str = DEVICE
    inside_before_s: float | None = None  # the track's last trusted fix on the right side
    late: bool = False  # judged on a late track


class Close(NamedTuple):
    ts_s: float
    device: str = DEVICE
    late: bool = False


class Streak(NamedTuple):
    start_s: float
    ts_s: float
    pending: bool = True
    late: bool = True


Op = Open | Close | Streak


def _s(t: int) -> float:
    return (t - T0) / 1000


def seen(v: Verdict) -> tuple[str, float, float | None]:
    start = v.detail.get("start")
    return v.action, _s(int(v.key.rsplit(":", 1)[1])), None if start is None else _s(start)


def play(ops: Sequence[Op], state: EngineState | None = None) -> list[Verdict]:
    state = state or EngineState()
    verdicts: list[Verdict] = []
    for op in ops:
        ctx = StepContext(state, verdicts)
        ctx.late_track = op.late
        if isinstance(op, Open):
            inside = -1 if op.inside_before_s is None else ms(op.inside_before_s)
            ctx.open(
                RULE,
                TYPE,
                PERSON,
                op.device,
                start=ms(op.start_s),
                ts=ms(op.ts_s),
                late=False,
                reopen_ms=POLICY.reopen_s * 1000,
                inside_before=inside,
            )
        elif isinstance(op, Close):
            ctx.close(RULE, TYPE, PERSON, op.device, ms(op.ts_s))
        else:
            c = Confirm(phase=PENDING if op.pending else CLEAR, start=ms(op.start_s))
            ctx.streak(RULE, TYPE, PERSON, DEVICE, c, ms(op.ts_s))
    return verdicts


RAISED = ("raise", 0, 0)

CASES = [
    pytest.param([Open(0, 60)], [RAISED], id="a confirmed breach is one alert"),
    pytest.param(
        [Open(0, 60), Open(0, 60), Open(0, 75, device=PHONE), Open(30, 90)],
        [RAISED],
        id="shown again: redelivery, second device, later streak",
    ),
    pytest.param(
        [Open(0, 60), Close(120)], [RAISED, ("clear", 0, None)], id="back inside: cleared"
    ),
    pytest.param(
        [Open(0, 60), Close(120, device=PHONE)], [RAISED], id="only its own device clears it"
    ),
    pytest.param(
        [Open(0, 60), Close(120), Close(150)],
        [RAISED, ("clear", 0, None)],
        id="cleared once",
    ),
    pytest.param(
        [Open(0, 60), Close(120), Open(300, 360)],
        [RAISED, ("clear", 0, None), ("reopen", 0, None)],
        id="out again within reopen_s: the same breach reopens",
    ),
    pytest.param(
        [Open(0, 60), Close(120), Open(500, 560)],
        [RAISED, ("clear", 0, None), ("raise", 500, 500)],
        id="out again after reopen_s: a new alert",
    ),
    pytest.param(
        [Open(0, 60), Open(-60, 90)],
        [RAISED, ("extend", 0, -60)],
        id="evidence it began earlier moves its start back",
    ),
    pytest.param(
        [Open(0, 60, inside_before_s=-600), Open(-120, -30, late=True)],
        [RAISED, ("extend", 0, -120)],
        id="late fixes just before it: where it began",
    ),
    pytest.param(
        [Open(0, 60, inside_before_s=-60), Open(-300, -120, late=True)],
        [RAISED, ("raise", -300, -300)],
        id="late fixes before the person was back inside: another breach",
    ),
    pytest.param(
        [Open(0, 60), Close(120, late=True)],
        [RAISED],
        id="a late track does not end the live track's episode",
    ),
    pytest.param(
        [Open(0, 60, late=True), Close(120, late=True)],
        [RAISED, ("clear", 0, None)],
        id="a late track ends its own episode",
    ),
    pytest.param(
        [Open(0, 60, inside_before_s=-600), Streak(-90, -30)],
        [RAISED, ("extend", 0, -90)],
        id="a late streak just before it extends it",
    ),
    pytest.param(
        [Open(0, 60, inside_before_s=-60), Streak(-90, -30)],
        [RAISED],
        id="a late streak before the person was back inside does not",
    ),
    pytest.param(
        [Streak(-90, -30), Open(0, 60, inside_before_s=-600)],
        [("raise", -90, -90)],
        id="a late streak first: the live alert starts where it began",
    ),
    pytest.param(
        [Streak(-90, -30), Open(0, 60, inside_before_s=-60)],
        [RAISED],
        id="a late streak before a trusted inside fix is no hint",
    ),
    pytest.param(
        [Streak(-90, -30, late=False), Open(0, 60, inside_before_s=-600)],
        [RAISED],
        id="the live track's own streak is no hint",
    ),
    pytest.param(
        [Streak(-90, -30), Streak(-90, -20, pending=False), Open(0, 60, inside_before_s=-600)],
        [RAISED],
        id="a late streak broken off is no hint",
    ),
    pytest.param(
        [Open(0, 60), Close(120), Open(300, 360, device=PHONE)],
        [RAISED, ("clear", 0, None), ("reopen", 0, None)],
        id="out again within reopen_s on the second device: reopened",
    ),
]


@pytest.mark.parametrize(("ops", "expected"), CASES)
def test_one_breach_one_alert(ops: list[Op], expected: list[tuple[str, float, float]]) -> None:
    assert [seen(v) for v in play(ops)] == expected


@pytest.mark.parametrize(
    ("ops", "late"),
    [
        pytest.param([Open(0, 60)], False, id="live"),
        pytest.param([Open(0, 60, late=True)], True, id="on a late track"),
    ],
)
def test_a_breach_confirmed_on_a_late_track_is_raised_late(ops: list[Op], late: bool) -> None:
    [raised] = play(ops)
    assert raised.late is late


def test_episodes_are_per_person_and_rule() -> None:
    state = EngineState()
    play([Open(0, 60)], state)
    ctx = StepContext(state, [])
    ctx.open("curfew_breach", "curfew_breach", PERSON, DEVICE, start=ms(0), ts=ms(60), late=False)
    ctx.open(RULE, TYPE, "S2", DEVICE, start=ms(0), ts=ms(60), late=False)
    assert [(v.action, v.type, v.supervisee) for v in ctx.verdicts] == [
        ("raise", "curfew_breach", PERSON),
        ("raise", TYPE, "S2"),
    ]
