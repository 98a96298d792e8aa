"""geofence.stages.dedup: a QoS 1 redelivery is judged once, by the device's sequence
numbers; a newer fix is never a redelivery, so a rebooted device is still judged."""

from __future__ import annotations

import pytest

from geofence.model import Quality
from geofence.stages import dedup, jurisdiction
from geofence.state import Track
from tests.geofence.engine_kit import Lane, judged, ms


def duplicates(arrivals: list[tuple[int, float]]) -> list[bool]:
    """Which of these (seq, seconds) arrivals the live track finds already judged."""
    track = Track()
    found = []
    for seq, t in arrivals:
        found.append(dedup.seen_before(track, seq, ms(t)))
        track.last_ts = max(track.last_ts, ms(t))  # the live track has judged up to here
    return found


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        pytest.param([(1, 0), (2, 30), (3, 60)], [False] * 3, id="in order"),
        pytest.param([(1, 0), (2, 30), (2, 30)], [False, False, True], id="the last again"),
        pytest.param(
            [(1, 0), (2, 30), (3, 60), (1, 0)], [False] * 3 + [True], id="an older one again"
        ),
        pytest.param(
            [(1, 0), (3, 60), (2, 30), (2, 30)],
            [False, False, False, True],
            id="a late fix is new once, then a redelivery",
        ),
        pytest.param(
            [(100, 0), (101, 30), (1, 60), (2, 90)], [False] * 4, id="reboot: numbering restarts"
        ),
        pytest.param(
            [(100, 0), (1, 60), (1, 60)], [False, False, True], id="after a reboot, redelivered"
        ),
        pytest.param([(5, 0), (5, 30)], [False, False], id="same number, newer time: new"),
        pytest.param(
            [(1, 0), (100, 30), (1, 0)],
            [False, False, False],
            id="beyond the 64 remembered: the database's key decides",
        ),
    ],
)
def test_a_redelivery_is_recognised(
    arrivals: list[tuple[int, float]], expected: list[bool]
) -> None:
    assert duplicates(arrivals) == expected


def test_a_duplicate_goes_no_further_down_the_pipeline() -> None:
    out = [judged(t, allowed=-2) for t in (0, 30)]
    again = judged(30, allowed=-2, flags=Quality.DUPLICATE)
    lane = Lane(dedup.run, jurisdiction.run)
    assert lane.actions([*out, again, again]) == ["", "", "", ""]
    assert lane.actions([judged(60, allowed=-2)]) == ["raise"]
