"""geofence.confirm: when fixes on the wrong side become a breach, and when it is over.

Each case is a row of fixes as `confirm.step` sees them (violation score, seconds, error
radius, depth in radii) and what each one brings: "raise", "clear" or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pytest

from geofence import confirm
from geofence.confirm import Confirm
from geofence.policy import Policy
from tests.geofence.engine_kit import POLICY, ms


class S(NamedTuple):
    """One fix: +2 certainly violating … -2 certainly compliant; radius in m; depth in radii."""

    score: int
    t_s: float
    radius: float = 10.0
    depth: float = 1.0


def play(steps: Sequence[S], c: Confirm | None = None, policy: Policy = POLICY) -> list[str]:
    c = Confirm() if c is None else c
    return [confirm.step(c, s.score, ms(s.t_s), s.radius, policy, s.depth) or "" for s in steps]


OUT = [S(2, 0), S(2, 30), S(2, 60)]  # a breach by the count rule, raised at 60 s


@pytest.mark.parametrize(
    ("steps", "expected", "start_s", "policy"),
    [
        pytest.param(OUT, ["", "", "raise"], 0, POLICY, id="three certain fixes over a minute"),
        pytest.param(
            [S(2, 0), S(2, 20), S(2, 40), S(2, 60)],
            ["", "", "", "raise"],
            0,
            POLICY,
            id="three inside a minute wait for the minute",
        ),
        pytest.param(
            [S(2, 0), S(2, 20)], ["", ""], None, POLICY, id="two shallow fixes are not enough"
        ),
        pytest.param(
            [S(2, 0, depth=3), S(2, 20, depth=3)],
            ["", "raise"],
            0,
            POLICY,
            id="two fixes three radii out, 20 s apart",
        ),
        pytest.param(
            [S(2, 0, depth=2), S(2, 20, depth=2)],
            ["", "raise"],
            0,
            POLICY,
            id="two radii out twice reaches the evidence",
        ),
        pytest.param(
            [S(2, 0, depth=1.9), S(2, 20, depth=2)],
            ["", ""],
            None,
            POLICY,
            id="just short of the evidence",
        ),
        pytest.param(
            [S(2, 0, depth=3), S(2, 10, depth=3), S(2, 20, depth=3)],
            ["", "", "raise"],
            0,
            POLICY,
            id="deep evidence still spans confirm_fast_s",
        ),
        pytest.param(
            [S(2, 0, depth=50)], [""], None, POLICY, id="one fix however deep never alone"
        ),
        pytest.param(
            [S(2, 0, depth=50), S(2, 20, depth=1.5)],
            ["", ""],
            None,
            Policy(confirm_evidence=5),
            id="a deep fix weighs at most evidence_cap",
        ),
        pytest.param(
            [S(2, 0, depth=2.5), S(2, 20, depth=2.5)],
            ["", "raise"],
            0,
            Policy(confirm_evidence=5),
            id="below the cap depth counts in full",
        ),
        pytest.param(
            [S(2, 0), S(2, 300)], ["", "raise"], 0, POLICY, id="two fixes 5 min apart: a phone"
        ),
        pytest.param([S(2, 0), S(2, 240)], ["", ""], None, POLICY, id="two fixes 4 min apart wait"),
        pytest.param(
            [S(2, 0), S(1, 15), S(2, 30), S(-1, 45, radius=500), S(2, 60)],
            ["", "", "", "", "raise"],
            0,
            POLICY,
            id="leaning fixes neither count nor reset",
        ),
        pytest.param(
            [S(2, 0), S(0, 15), S(2, 30), S(0, 45), S(2, 60)],
            ["", "", "", "", "raise"],
            0,
            POLICY,
            id="fixes that say nothing neither count nor reset",
        ),
        pytest.param(
            [S(2, 0), S(2, 30), S(-2, 45), S(2, 60), S(2, 90), S(2, 120)],
            ["", "", "", "", "", "raise"],
            60,
            POLICY,
            id="a trusted fix on the right side starts the count again",
        ),
        pytest.param(
            [S(2, 0), S(2, 30), S(-2, 45, radius=3000), S(2, 60)],
            ["", "", "", "raise"],
            0,
            POLICY,
            id="a km-wide compliant circle does not reset",
        ),
        pytest.param(
            [*OUT, S(2, 90), S(2, 120)],
            ["", "", "raise", "", ""],
            0,
            POLICY,
            id="a breach is raised once",
        ),
        pytest.param(
            [S(2, 0), S(2, 20), S(2, 45)],
            ["", "", "raise"],
            0,
            Policy(confirm_s=45),
            id="strict policy: three over 45 s",
        ),
        pytest.param(
            [S(2, 0), S(2, 60)],
            ["", "raise"],
            0,
            Policy(confirm_fixes=2),
            id="heightened period: two fixes",
        ),
    ],
)
def test_step_confirms_a_breach(
    steps: list[S], expected: list[str], start_s: float | None, policy: Policy
) -> None:
    c = Confirm()
    assert play(steps, c, policy) == expected
    if start_s is not None:
        assert c.start == ms(start_s)  # the alert's start: the first fix of the streak


@pytest.mark.parametrize(
    ("score", "radius", "trusted"),
    [
        pytest.param(-2, 10.0, True, id="wholly inside, small"),
        pytest.param(-2, 1000.0, True, id="wholly inside, trust_max_m"),
        pytest.param(-2, 1001.0, False, id="wholly inside, wider than trust_max_m"),
        pytest.param(-1, 10.0, True, id="leaning inside, small"),
        pytest.param(-1, 100.0, True, id="leaning inside, trust_acc_m"),
        pytest.param(-1, 101.0, False, id="leaning inside, wider than trust_acc_m"),
    ],
)
def test_a_fix_on_the_right_side_breaks_a_streak_only_if_trustworthy(
    score: int, radius: float, trusted: bool
) -> None:
    steps = [S(2, 0), S(2, 30), S(score, 45, radius), S(2, 60)]
    assert play(steps)[-1] == ("" if trusted else "raise")


@pytest.mark.parametrize(
    ("after", "expected", "policy"),
    [
        pytest.param([S(-2, 90)], [""], POLICY, id="one fix back is not enough"),
        pytest.param([S(-2, 90), S(-2, 120)], ["", "clear"], POLICY, id="two in a row clear"),
        pytest.param(
            [S(-2, 90), S(2, 105), S(-2, 120), S(-2, 150)],
            ["", "", "", "clear"],
            POLICY,
            id="a violation between them starts the row again",
        ),
        pytest.param(
            [S(-2, 90), S(1, 105), S(-1, 110, radius=500), S(-2, 120)],
            ["", "", "", "clear"],
            POLICY,
            id="leaning fixes do not break the row",
        ),
        pytest.param(
            [S(-2, 90, radius=1500), S(-2, 120, radius=1500)],
            ["", ""],
            POLICY,
            id="km-wide circles prove nothing",
        ),
        pytest.param(
            [S(-1, 90, radius=50), S(-1, 120, radius=50)],
            ["", "clear"],
            POLICY,
            id="standing just inside the border clears",
        ),
        pytest.param(
            [S(-2, 90), S(-2, 120), S(-2, 150)],
            ["", "", "clear"],
            Policy(clear_fixes=3),
            id="clear_fixes 3",
        ),
        pytest.param(
            [S(-2, 90), S(-2, 120), S(2, 150), S(2, 180), S(2, 210)],
            ["", "clear", "", "", "raise"],
            POLICY,
            id="after clearing a new exit needs full evidence",
        ),
    ],
)
def test_a_breach_holds_until_enough_trusted_fixes_in_a_row(
    after: list[S], expected: list[str], policy: Policy
) -> None:
    c = Confirm()
    assert play(OUT, c, policy)[-1] == "raise"
    assert play(after, c, policy) == expected


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        pytest.param([], None, id="nothing to end"),
        pytest.param([S(2, 0)], None, id="a streak is dropped"),
        pytest.param([S(2, 0), S(2, 30), S(2, 60)], "clear", id="a breach ends"),
    ],
)
def test_a_rule_that_stops_applying_ends_whatever_it_had(
    before: list[S], expected: str | None
) -> None:
    c = Confirm()
    play(before, c)
    assert confirm.end(c) == expected
    assert c.phase == confirm.CLEAR


def test_the_last_trusted_fix_on_the_right_side_is_remembered() -> None:
    # An episode keeps it: late fixes before it extend the episode only if none is between.
    c = Confirm()
    play([S(-2, 0), S(-1, 10, radius=500), S(2, 20), S(2, 50), S(2, 80)], c)
    assert c.good_ts == ms(0)


@pytest.mark.parametrize(
    ("before", "settled", "start_s"),
    [
        pytest.param([], "raise", -600, id="from clear: raised at once"),
        pytest.param([S(2, 0)], "raise", -600, id="while pending: begun where the dwell began"),
        pytest.param(OUT, "", 0, id="already a breach: the same one"),
    ],
)
def test_settle_confirms_a_breach_proven_otherwise(
    before: list[S], settled: str, start_s: float
) -> None:
    c = Confirm()
    play(before, c)
    assert (confirm.settle(c, ms(-600)) or "") == settled
    assert c.start == ms(start_s)


def test_a_settled_breach_holds_and_clears_like_any_other() -> None:
    c = Confirm()
    confirm.settle(c, ms(-600))
    assert play([S(2, 0), S(2, 30), S(2, 60), S(-2, 90), S(2, 100), S(-2, 120)], c) == [""] * 6
    assert play([S(-2, 150)], c) == ["clear"]
