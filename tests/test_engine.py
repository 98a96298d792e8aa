"""The pure engine on the real 丽水 boundaries: what an officer would see as alerts."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from geofence.engine import Engine
from geofence.model import DeviceEvent, Heightened, Verdict, ZoneDef
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from tests.kit import (
    LIANDU,
    LIANDU_SEAT,
    QINGTIAN,
    T0,
    border_crossing,
    fix,
    line,
    lishui_collection,
    offset,
    qingtian_point,
    roster,
)

ZONES = parse_feature_collection(lishui_collection())


def engine(extra_zones: list[ZoneDef] = (), **person: Any) -> Engine:  # type: ignore[assignment]
    return Engine(RuleSet(roster(**person), [*ZONES, *extra_zones]))


def raised(verdicts: list[Verdict], kind: str | None = None) -> list[Verdict]:
    return [v for v in verdicts if v.action == "raise" and (kind is None or v.type == kind)]


def run(e: Engine, entries: list[dict[str, Any]], device: str = "T1") -> list[Verdict]:
    """Feed fixes one message at a time, ticking the clock as the replay would."""
    out: list[Verdict] = []
    for entry in entries:
        f = fix(entry, device)
        out += e.tick(f.at)
        out += e.process([f]).verdicts
    return out


def walk_out(n_in: int = 20, n_out: int = 20) -> list[dict[str, Any]]:
    """From the city seat to the 莲都/青田 border and on into 青田, every 30 s."""
    target = qingtian_point()
    border = border_crossing(LIANDU_SEAT, target, LIANDU)
    near = offset(border, 0, 0)
    inside = line(LIANDU_SEAT, near, n_in)
    beyond = line(border, target, 400, t0=inside[-1]["ts"] + 30_000, seq0=n_in + 1)
    return inside + beyond[:n_out]


def test_walking_out_of_the_jurisdiction_raises_one_alert_within_minutes() -> None:
    fixes = walk_out()
    verdicts = run(engine(), fixes)
    alerts = raised(verdicts)
    assert [a.type for a in alerts] == ["jurisdiction_exit"]
    crossed = fixes[20]["ts"]
    assert crossed <= alerts[0].ts <= crossed + 3 * 60_000
    assert alerts[0].late is False


def test_returning_clears_and_a_second_exit_is_a_second_alert() -> None:
    out = walk_out(20, 20)
    back = list(reversed([dict(f) for f in out]))
    for i, f in enumerate(back):
        f["seq"] = len(out) + 1 + i
        f["ts"] = out[-1]["ts"] + (i + 1) * 30_000
    again = [dict(f) for f in out]
    for i, f in enumerate(again):
        f["seq"] = 2 * len(out) + 1 + i
        f["ts"] = back[-1]["ts"] + (i + 1) * 30_000
    verdicts = run(engine(), out + back + again)
    assert [(v.action, v.type) for v in verdicts if v.type != "pursuit"] == [
        ("raise", "jurisdiction_exit"),
        ("clear", "jurisdiction_exit"),
        ("raise", "jurisdiction_exit"),
    ]


def test_drift_and_spikes_near_the_border_raise_nothing() -> None:
    """A person at home 60 m inside the border, an hour of indoor drift that often lands
    outside, two multipath spikes 700 m out with lying accuracy, and cell fixes 1.5 km off."""
    border = border_crossing(LIANDU_SEAT, qingtian_point(), LIANDU)
    home = offset(border, -45, 40)  # back towards the seat, roughly 60 m inside
    rng = random.Random(7)
    drift_e = drift_n = 0.0
    entries = []
    for i in range(240):
        drift_e = 0.9 * drift_e + rng.gauss(0, 25)
        drift_n = 0.9 * drift_n + rng.gauss(0, 25)
        lat, lon = offset(home, drift_e, drift_n)
        entry = {"seq": i + 1, "ts": T0 + i * 15_000, "lat": lat, "lon": lon, "acc": 60.0}
        if i in (50, 51):
            entry["lat"], entry["lon"] = offset(home, 500, -500)
            entry["acc"] = 5.0
        if i in range(120, 130):
            entry["lat"], entry["lon"] = offset(home, 1100, -1000)
            entry["acc"] = 1200.0
            entry["src"] = "cell"
        entries.append(entry)
    assert raised(run(engine(), entries)) == []


def test_redelivered_and_reordered_fixes_raise_the_same_single_alert() -> None:
    fixes = walk_out()
    rng = random.Random(3)
    arrivals = []
    for f in fixes:
        arrivals.append(f)
        if rng.random() < 0.3:
            arrivals.append(dict(f))  # QoS 1 redelivery
    for i in range(0, len(arrivals) - 2, 5):
        arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    e = engine()
    verdicts = []
    for n, entry in enumerate(arrivals):
        f = fix(entry, at=T0 + n * 30_000 + 60_000)
        verdicts += e.process([f]).verdicts
    assert [a.type for a in raised(verdicts)] == ["jurisdiction_exit"]


def test_a_breach_seen_only_in_a_buffered_upload_is_late() -> None:
    fixes = walk_out(20, 20)
    back = [dict(f) for f in reversed(fixes[20:])]
    for i, f in enumerate(back):
        f["seq"] = 41 + i
        f["ts"] = fixes[-1]["ts"] + (i + 1) * 30_000
    e = engine()
    live = run(e, fixes[:20])
    upload_at = back[-1]["ts"] + 60_000
    buffered = [fix(f, at=upload_at) for f in fixes[20:] + back]
    verdicts = live + e.process(buffered).verdicts
    alerts = raised(verdicts)
    assert [a.type for a in alerts] == ["jurisdiction_exit"]
    assert alerts[0].late is True
    assert fixes[20]["ts"] <= alerts[0].ts < back[0]["ts"]


def test_a_late_batch_after_live_fixes_resumed_is_still_caught() -> None:
    """The tag came back into coverage at home and sent live fixes before its buffer."""
    fixes = walk_out(20, 20)
    back_home = line(LIANDU_SEAT, LIANDU_SEAT, 5, t0=fixes[-1]["ts"] + 60_000, seq0=100)
    e = engine()
    verdicts = run(e, fixes[:20]) + run(e, back_home)
    verdicts += e.process([fix(f, at=back_home[-1]["ts"] + 5000) for f in fixes[20:]]).verdicts
    alerts = raised(verdicts)
    assert [(a.type, a.late) for a in alerts] == [("jurisdiction_exit", True)]


def test_approved_leave_allows_the_destination_until_it_ends() -> None:
    fixes = walk_out(20, 60)
    crossed = fixes[20]["ts"]
    leave_end = crossed + 15 * 60_000
    e = engine(
        leaves=[
            {
                "from": _iso(fixes[0]["ts"]),
                "to": _iso(leave_end),
                "destinations": [QINGTIAN],
            }
        ]
    )
    alerts = raised(run(e, fixes))
    assert [a.type for a in alerts] == ["jurisdiction_exit"]
    assert leave_end <= alerts[0].ts <= leave_end + 3 * 60_000
    assert alerts[0].detail.get("after_leave")


def test_exclusion_zone_entry_is_raised() -> None:
    school = offset(LIANDU_SEAT, 2000, 0)
    zone = ZoneDef(
        id="school",
        kind="exclusion",
        geometry={"type": "Point", "coordinates": [school[1], school[0]]},
        radius_m=200.0,
    )
    entries = line(LIANDU_SEAT, school, 30)
    entries += line(school, school, 10, t0=entries[-1]["ts"] + 30_000, seq0=31)
    alerts = raised(run(engine([zone], exclusion=["school"]), entries))
    assert [(a.type, a.detail["zone"]) for a in alerts] == [("exclusion_enter", "school")]


def test_curfew_across_midnight() -> None:
    """Home 21:00–06:00 every day; out at 23:00 local time is a breach, at 20:00 it is not."""
    home_zone = ZoneDef(
        id="home",
        kind="home",
        geometry={"type": "Point", "coordinates": [LIANDU_SEAT[1], LIANDU_SEAT[0]]},
        radius_m=150.0,
        schedule=_nightly(),
    )
    away = offset(LIANDU_SEAT, 1500, 0)
    evening = 1_764_244_800_000  # 2025-11-27 12:00 UTC = 20:00 Shanghai
    out_evening = line(away, away, 60, t0=evening, interval_s=60)  # 20:00-21:00
    at_night = line(away, away, 20, t0=evening + 3_600_000, interval_s=60, seq0=61)
    e = engine([home_zone], home="home")
    assert raised(run(e, out_evening)) == []
    alerts = raised(run(e, at_night))
    assert [a.type for a in alerts] == ["curfew_breach"]
    assert alerts[0].ts <= evening + 3_600_000 + 3 * 60_000


def _nightly() -> tuple:
    from geofence.zones import parse_schedule

    return parse_schedule([{"days": [1, 2, 3, 4, 5, 6, 7], "from": "21:00", "to": "06:00"}])


def _iso(ms: int) -> str:
    from fencewatch.timefmt import iso

    return iso(ms)


def test_device_faults() -> None:
    e = engine()
    home = line(LIANDU_SEAT, LIANDU_SEAT, 3)
    verdicts = run(e, home)
    # No position for 15 minutes while still reporting.
    nofix = [{"seq": 10 + i, "ts": T0 + 120_000 + i * 60_000} for i in range(16)]
    verdicts += run(e, nofix)
    # Low battery, then strap cut.
    last = nofix[-1]["ts"]
    verdicts += run(e, [{**home[0], "seq": 40, "ts": last + 60_000, "batt": 9}])
    verdicts += e.process(
        [], [DeviceEvent("T1", 41, last + 90_000, last + 91_000, "strap_cut")]
    ).verdicts
    # Then silence: the clock passes the offline deadline.
    verdicts += e.tick(last + 91_000 + 16 * 60_000)
    assert [a.type for a in raised(verdicts)] == [
        "no_fix",
        "low_battery",
        "strap_tamper",
        "device_offline",
    ]


def test_heightened_period_confirms_sooner() -> None:
    """A slow walk just over the border (5 m a fix): shallow evidence, so the normal policy
    needs its three fixes over a minute; the heightened one needs two."""
    target = qingtian_point()
    border = border_crossing(LIANDU_SEAT, target, LIANDU)
    inside = line(LIANDU_SEAT, border, 20)
    fixes = inside + line(border, target, 2000, t0=inside[-1]["ts"] + 30_000, seq0=21)[:12]
    normal = raised(run(engine(), fixes))[0]
    strict = Engine(
        RuleSet(
            msgspec.structs.replace(
                roster(),
                heightened=[
                    Heightened(T0, T0 + 86_400_000, "两会", {"confirm_fixes": 2, "confirm_s": 20})
                ],
            ),
            ZONES,
        )
    )
    sooner = raised(run(strict, fixes))[0]
    assert sooner.ts < normal.ts


def test_recurring_permit_allows_its_places_only_in_its_hours() -> None:
    """Thursdays 08:00–20:00 in 青田 for work; still there after 20:00 is a breach."""
    fixes = walk_out(20, 20)
    stay = qingtian_point()
    evening = line(stay, stay, 80, t0=fixes[-1]["ts"] + 60_000, interval_s=60, seq0=41)
    permit = {
        "from": _iso(T0 - 86_400_000),
        "to": _iso(T0 + 90 * 86_400_000),
        "destinations": [QINGTIAN],
        "schedule": [{"days": [4], "from": "08:00", "to": "20:00"}],
    }
    alerts = raised(run(engine(leaves=[permit]), fixes + evening))
    assert [a.type for a in alerts] == ["jurisdiction_exit"]
    eight_pm = 1_764_244_800_000  # 2025-11-27 12:00 UTC = 20:00 Shanghai
    assert eight_pm <= alerts[0].ts <= eight_pm + 4 * 60_000


def test_a_rebooted_device_restarting_its_numbers_is_still_judged() -> None:
    fixes = walk_out(20, 20)
    for i, f in enumerate(fixes[20:]):
        f["seq"] = i  # rebooted just after crossing: numbering starts again
    assert [a.type for a in raised(run(engine(), fixes))] == ["jurisdiction_exit"]


def test_state_survives_a_snapshot_after_long_tracks() -> None:
    """Write-behind snapshots must hold every device's state, however long it has reported."""
    e = engine()
    run(e, line(LIANDU_SEAT, LIANDU_SEAT, 300))
    restored = Engine.restore(e.rules, e.snapshot())
    assert restored.state == e.state


def test_a_device_is_kept_under_the_rosters_own_string_not_the_messages() -> None:
    # One string a device, not one more from the first message that named it (nor from the
    # snapshot a worker restores): docs/benchmarks.md, "Worker memory, eighth round".
    e = engine()
    [ref] = e.rules.supervisees[e.rules.device_owner["T1"]].devices
    named = "".join(["T", "1"])  # equal to the roster's id, another object, as decoded
    assert named is not ref.id
    run(e, line(LIANDU_SEAT, LIANDU_SEAT, 3), device=named)
    [kept] = e.state.devices
    assert kept is ref.id
    [(_, watched)] = e.watchdogs_due(2**62)
    assert watched is ref.id
    restored = Engine.restore(e.rules, e.snapshot())
    [again] = restored.state.devices
    assert again is ref.id
    assert restored.state == e.state
