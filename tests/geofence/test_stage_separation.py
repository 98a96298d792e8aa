"""geofence.stages.separation (人机分离): a tag and a phone of one person surely apart —
beyond both error circles and the way the person could have gone between the two fixes —
for `separation_s` is one `device_separation`, naming the phone; together again ends it.
A phone that is with its wearer, a wrong fix now and then, a coarse fix, or evidence
older than the live track says nothing. And a device gone silent while the other kept
reporting says so in its device_offline alert."""

from __future__ import annotations

from typing import Any

from geofence.context import StepContext
from geofence.judge import Judged
from geofence.model import Quality
from geofence.stages import offline, separation
from geofence.state import DeviceState, EngineState
from tests.geofence.engine_kit import Lane, alerts, judged, ms

KINDS = {"T1": "tag", "P1": "phone"}


def tag(t: float, east: float = 0.0, spd: float | None = 0.0, **kw: Any) -> Judged:
    return judged(t, east=east, fix_fields={"device": "T1", "spd": spd, "acc": 8.0}, **kw)


def phone(t: float, east: float = 0.0, acc: float = 20.0, **kw: Any) -> Judged:
    """An OwnTracks phone's fix: wifi indoors, so no speed."""
    return judged(t, east=east, fix_fields={"device": "P1", "acc": acc, "src": "wifi"}, **kw)


def run(fixes: list[Judged], late: bool = False, batch_s: int = 0) -> Lane:
    """Both devices' fixes, in device-time order, through the stage (one lane per device
    on one state, as the engine keeps a track per device and episodes per person). With
    `batch_s`, they arrive in batches that long, each judged device by device as the
    engine does."""
    state = EngineState()
    lanes = {d: Lane(separation.run, state=state, late=late, kinds=KINDS) for d in KINDS}
    every = Lane(separation.run, state=state, late=late, kinds=KINDS)
    order = (
        (lambda j: j.fix.ts)
        if not batch_s
        else (lambda j: (j.fix.ts // (batch_s * 1000), j.fix.device, j.fix.ts))
    )
    for j in sorted(fixes, key=order):
        every.verdicts += lanes[j.fix.device].feed(j)
    return every


def walk_away(metres_per_s: float = 1.4, until_s: int = 3600) -> list[Judged]:
    """The tag walks away east from home at 1.4 m/s; the phone stays home, pinging every
    10 minutes (an OwnTracks phone that has not moved)."""
    tags = [tag(t, east=min(t * metres_per_s, 2500.0), spd=1.4) for t in range(0, until_s, 30)]
    phones = [phone(t + 5) for t in range(0, until_s, 600)]
    return tags + phones


def test_a_phone_left_at_home_while_the_tag_walks_away_is_one_alert_naming_the_phone() -> None:
    lane = run(walk_away())
    [raised] = lane.verdicts
    assert (raised.action, raised.type, raised.device) == ("raise", "device_separation", "P1")
    d = raised.detail
    assert d["with_person"] == "T1" and d["distance_m"] > 1000 and d["apart_s"] >= 1200
    # Apart from the first phone ping that saw the tag beyond both circles (at 605 s the
    # tag is ~850 m off), and raised at a ping at least 20 minutes later.
    assert d["start"] <= ms(605) and raised.ts - d["start"] >= 1_200_000
    assert (d["lat"], d["lon"]) != (d["person_lat"], d["person_lon"])


def test_fixes_judged_device_by_device_in_a_batch_pair_up_all_the_same() -> None:
    # Ten-minute batches: every tag fix of a batch is judged before the phone's.
    [raised] = run(walk_away(), batch_s=600).verdicts
    assert (raised.action, raised.device) == ("raise", "P1")


def test_a_phone_falling_back_to_a_cell_fix_is_not_proof_it_is_back() -> None:
    there = walk_away(until_s=3000)
    cell = judged(2405, fix_fields={"device": "P1", "acc": 1800.0, "src": "cell"})
    lane = run([*there, cell])
    assert alerts(lane.verdicts) == [("raise", "device_separation")]


def test_coming_home_again_ends_it() -> None:
    there = walk_away(until_s=3000)
    back = [tag(t, east=0.0) for t in range(3000, 3600, 30)] + [phone(3305), phone(3605)]
    lane = run(there + back)
    assert alerts(lane.verdicts) == [
        ("raise", "device_separation"),
        ("clear", "device_separation"),
    ]
    assert lane.verdicts[1].device == "P1"


def test_a_phone_with_its_wearer_in_a_car_is_never_apart() -> None:
    # 15 m/s: the tag reports every 60 s, the phone every ~40 s on the move (no speed on
    # its wifi fixes), so their latest fixes lie up to a kilometre apart.
    tags = [tag(t, east=t * 15.0, spd=15.0) for t in range(0, 3600, 60)]
    phones = [phone(t, east=t * 15.0 + 40) for t in range(7, 3600, 40)]
    assert run(tags + phones).verdicts == []


def test_wrong_fixes_now_and_then_are_not_a_separation() -> None:
    # At home together; a wifi outlier 900 m off every 15 minutes, and a 10-minute indoor
    # excursion of the tag 300 m off with a small circle.
    tags = [tag(t, east=300.0 if 1200 <= t < 1800 else 0.0) for t in range(0, 7200, 30)]
    phones = [phone(t, east=900.0 if t % 900 == 5 else 0.0) for t in range(5, 7200, 300)]
    assert run(tags + phones).verdicts == []


def test_coarse_or_untrusted_fixes_and_late_tracks_say_nothing() -> None:
    tags = [tag(t, east=min(t * 1.4, 2500.0), spd=1.4) for t in range(0, 3600, 30)]
    # A cell fix's circle covers the distance: neither apart nor proof of anything.
    cell = [judged(t + 5, fix_fields={"device": "P1", "acc": 1500.0}) for t in range(0, 3600, 600)]
    assert run(tags + cell).verdicts == []
    jumps = [phone(t + 5, flags=Quality.JUMP) for t in range(0, 3600, 600)]
    assert run(tags + jumps).verdicts == []
    assert run(walk_away(), late=True).verdicts == []


def test_a_phone_gone_quiet_while_the_tag_reports_is_said_in_its_offline_alert() -> None:
    state = EngineState()
    lane = Lane(separation.run, state=state, kinds=KINDS)
    lane.feed(phone(0), tag(10), tag(3000))
    ctx = StepContext(state, [], KINDS)
    offline.fire(ctx, DeviceState(last_at=ms(1)), "S1", "P1", ms(3601), "silent")
    offline.fire(ctx, DeviceState(last_at=ms(3001)), "S1", "T1", ms(3901), "silent")
    phone_quiet, tag_quiet = ctx.verdicts
    assert phone_quiet.detail["still_reporting"] == ["T1"]
    assert "still_reporting" not in tag_quiet.detail
