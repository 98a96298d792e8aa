"""The device simulators: error model, encoder, network, suite, baseline and scorer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from fencewatch.replay import replay
from fencewatch.scenario import read_pings, read_roster, read_zones
from geofence.crs import gcj02_to_wgs84
from geofence.ruleset import RuleSet
from ingest.decode import decode
from simulators import lishui
from simulators.baseline import run as run_baseline
from simulators.build import write
from simulators.demo import build_demo, demo_scenario
from simulators.device import Battery, DevicePlan, DeviceSim
from simulators.geo import distance_m, offset
from simulators.gps import SOURCES, GpsModel, GpsProfile
from simulators.route import Env, Mode, RouteBuilder, Track
from simulators.score import Alert, match, parse_alerts
from simulators.suite import build
from simulators.tag import LiveTag
from simulators.uplink import LinkPlan, deliver
from supervision.checkin_rules import TYPE

T0 = 1_764_000_000_000  # 2025-11-24 16:00 UTC
MIN = 60_000


def _stay(env: Env, hours: float, seed: int = 1) -> Track:
    lat, lon = lishui.interior_point(np.random.default_rng(seed))
    return RouteBuilder(np.random.default_rng(seed), T0, lat, lon).stay(hours * 3600, env).track()


def _observe(track: Track, profile: GpsProfile, seed: int = 3, step_s: int = 30) -> tuple:
    times = np.arange(track.start, track.end, step_s * 1000)
    return GpsModel(profile, seed).observe(times, track.at(times)), times


def test_offset_lands_at_the_stated_distance() -> None:
    lat, lon = offset(28.45, 119.92, [300.0, 0.0, -1000.0], [400.0, -2000.0, 0.0])
    d = distance_m(28.45, 119.92, lat, lon)
    assert np.allclose(d, [500.0, 2000.0, 1000.0], rtol=2e-3)


def test_outdoor_gnss_fixes_mostly_within_their_accuracy() -> None:
    readings, _ = _observe(_stay(Env.OUTDOOR, 20), GpsProfile(multipath_per_fix=0.0))
    assert readings.fix.all()
    assert 0.65 <= np.mean(readings.err <= readings.acc) <= 0.95
    assert np.median(readings.err) < 8
    assert readings.acc.min() >= 3 and readings.acc.max() <= 15


def test_indoor_gnss_drifts_tens_of_metres_with_excursions() -> None:
    gnss_only = GpsProfile(indoor_mix=(1.0, 0.0, 0.0), excursions_per_h=1.0)
    readings, _ = _observe(_stay(Env.INDOOR, 40), gnss_only)
    assert 15 <= np.median(readings.err) <= 60
    assert readings.acc.min() >= 18 and readings.acc.max() <= 70
    # Excursions: 100+ m off, and for minutes (runs of consecutive fixes), with a smaller acc.
    far = readings.err > 100
    assert far.any() and np.all(readings.acc[far] < readings.err[far])
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate(([0], far.astype(int), [0])))))[::2]
    assert runs.max() >= 4


def test_cell_fixes_are_kilometres_off() -> None:
    errors, accs = [], []
    for seed in range(30):
        readings, _ = _observe(_stay(Env.INDOOR, 2, seed), GpsProfile(indoor_mix=(0, 0, 1)), seed)
        assert set(readings.src.tolist()) == {SOURCES.index("cell")}
        errors += readings.err.tolist()
        accs += readings.acc.tolist()
    assert 500 <= np.median(errors) <= 2500
    assert np.percentile(errors, 90) > 1000
    assert min(accs) >= 500 and max(accs) <= 2000


def test_multipath_spikes_lie_about_accuracy() -> None:
    readings, _ = _observe(_stay(Env.OUTDOOR, 20), GpsProfile(multipath_per_fix=0.05))
    spikes = readings.err > 150
    assert 0.02 < spikes.mean() < 0.12
    assert np.mean(readings.acc[spikes] < 20) > 0.5


def test_under_cover_there_is_no_fix() -> None:
    readings, _ = _observe(_stay(Env.COVER, 2), GpsProfile(cover_cell=0.0))
    assert not readings.fix.any()
    assert np.isnan(readings.lat).all()


def test_error_model_is_deterministic() -> None:
    track = _stay(Env.INDOOR, 3)
    a, _ = _observe(track, GpsProfile(), seed=9)
    b, _ = _observe(track, GpsProfile(), seed=9)
    assert np.array_equal(a.lat, b.lat, equal_nan=True)
    assert np.array_equal(a.acc, b.acc, equal_nan=True)


def _rules(plans: list[DevicePlan]) -> tuple[dict[str, str], dict[str, str]]:
    devices = {p.id: "S1" for p in plans}
    owntracks = {p.owntracks: p.id for p in plans if p.owntracks}
    return devices, owntracks


def test_messages_are_valid_spec_4_1_and_owntracks() -> None:
    rng = np.random.default_rng(5)
    home = lishui.interior_point(rng)
    b = RouteBuilder(rng, T0, *home).stay(1800).stay(900, Env.COVER)
    track = b.go(*lishui.interior_point(rng), Mode.EBIKE).stay(3600).track()
    tag = DevicePlan(
        "T1",
        track,
        interval_s=30,
        battery=Battery(start_pct=21, drain_pct_h=30, charging=((T0 + 50 * MIN, T0 + 90 * MIN),)),
        strap=((T0 + 10 * MIN, "open"), (T0 + 20 * MIN, "ok")),
        off=((T0 + 60 * MIN, T0 + 70 * MIN),),
        crs="gcj02",
        link=LinkPlan(
            gaps=((T0 + 25 * MIN, T0 + 40 * MIN),), redeliver=0.05, resend_on_reconnect=3
        ),
        seed=1,
    )
    phone = DevicePlan("P1", track, kind="phone", owntracks="li/phone", seed=2)
    devices, owntracks = _rules([tag, phone])
    seen_types: set[str] = set()
    for plan in (tag, phone):
        pings = deliver(DeviceSim(plan).advance(track.end), plan.link, np.random.default_rng(1))
        assert [p.at for p in pings] == sorted(p.at for p in pings)
        fixes, events = [], []
        for p in pings:
            raw = msgspec.json.encode(p.payload)
            decoded = decode(p.topic, raw, p.at, devices, owntracks)
            assert decoded.rejections == []
            fixes += decoded.fixes
            events += decoded.events
            if "batch" in p.payload:
                seen_types.add("batch")
                assert all("v" not in e for e in p.payload["batch"])
            if p.payload.get("fix") is False:
                seen_types.add("no_fix")
                assert "lat" not in p.payload and "lon" not in p.payload
        if plan.kind == "tag":
            # seq is the device's own counter: gapless, and in device-time order.
            by_seq = sorted({(f.seq, f.ts) for f in fixes} | {(e.seq, e.ts) for e in events})
            assert [s for s, _ in by_seq] == list(range(1, len(by_seq) + 1))
            assert [t for _, t in by_seq] == sorted(t for _, t in by_seq)
            assert any(f.gcj02 for f in fixes)
            assert {e.type for e in events} >= {
                "strap_open",
                "low_battery",
                "charging",
                "power_off",
            }
            late = [f for f in fixes if f.at - f.ts > 10 * MIN]
            assert late, "the coverage gap should have produced a late batch"
        else:
            assert fixes and not events
            assert all(f.ts // 1000 == f.seq for f in fixes)  # OwnTracks: whole seconds
    assert seen_types == {"batch", "no_fix"}


@pytest.mark.parametrize("platform", ["ios", "android"])
def test_owntracks_phones_send_what_their_apps_send(platform: str) -> None:
    """An iPhone's -1 for speed and course it has not got; after a coverage gap the queued
    locations in JSON arrays; the broker's will when the phone is switched off. All of it
    decodes: fixes, and one lwt event per switch-off."""
    rng = np.random.default_rng(7)
    home = lishui.interior_point(rng)
    b = RouteBuilder(rng, T0, *home).stay(1800, Env.INDOOR)
    track = b.go(*lishui.interior_point(rng), Mode.EBIKE).stay(7200).track()
    phone = DevicePlan(
        "P1",
        track,
        kind="phone",
        owntracks="li/phone",
        platform=platform,
        off=((T0 + 150 * MIN, T0 + 180 * MIN),),
        link=LinkPlan(gaps=((T0 + 20 * MIN, T0 + 70 * MIN),)),
        seed=4,
    )
    devices, owntracks = _rules([phone])
    pings = deliver(DeviceSim(phone).advance(track.end), phone.link, np.random.default_rng(1))
    arrays = [p.payload for p in pings if isinstance(p.payload, list)]
    assert arrays and all(m["_type"] == "location" for a in arrays for m in a)
    wills = [p for p in pings if isinstance(p.payload, dict) and p.payload["_type"] == "lwt"]
    assert len(wills) == 1 and wills[0].at > T0 + 150 * MIN
    messages = [
        m for p in pings for m in (p.payload if isinstance(p.payload, list) else [p.payload])
    ]
    locations = [m for m in messages if m["_type"] == "location"]
    unknown = [m for m in locations if m.get("vel") == -1 and m.get("cog") == -1]
    assert bool(unknown) == (platform == "ios")
    fixes, events = [], []
    for p in pings:
        decoded = decode(p.topic, msgspec.json.encode(p.payload), p.at, devices, owntracks)
        assert decoded.rejections == [] and decoded.ignored == []
        fixes += decoded.fixes
        events += decoded.events
    assert len(fixes) == len(locations) and [e.type for e in events] == ["lwt"]


def test_gcj02_output_converts_back_to_the_truth() -> None:
    track = _stay(Env.OUTDOOR, 0.5)
    plan = DevicePlan("T1", track, gps=GpsProfile(multipath_per_fix=0.0), crs="gcj02", seed=4)
    for m in DeviceSim(plan).advance(track.end):
        assert m.payload["crs"] == "gcj02"
        lat, lon = gcj02_to_wgs84(m.payload["lat"], m.payload["lon"])
        assert float(distance_m(track.lat[0], track.lon[0], lat, lon)) < 60


class _Link:
    def __init__(self) -> None:
        self.up = False
        self.sent: list[tuple[str, dict]] = []

    def ready(self) -> bool:
        return self.up

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, msgspec.json.decode(payload)))
        return True


def test_live_tag_holds_fixes_while_the_link_is_down_then_batches_them() -> None:
    track = _stay(Env.OUTDOOR, 1)
    tag = LiveTag(DevicePlan("T1", track, seed=1), interval_s=10)
    link = _Link()
    for k in range(30):
        tag.step(track.start + k * 10_000, link)
    assert link.sent == [] and len(tag.backlog) == 30
    link.up = True
    tag.step(track.start + 305_000, link)
    assert "batch" in link.sent[0][1]
    seqs = [e["seq"] for _, p in link.sent for e in p.get("batch", [p])]
    assert seqs == list(range(1, 32))
    tag.step(track.start + 315_000, link)
    assert "batch" not in link.sent[-1][1] and link.sent[-1][1]["seq"] == 32


def test_suite_scenarios_are_readable_and_truthful(tmp_path: Path) -> None:
    for kind in ("buffered_breach", "leave_transit", "curfew_late", "strap_tamper"):
        out = tmp_path / kind
        build(kind, 1, 0, out)
        zones = read_zones(out / "zones.geojson")
        roster = read_roster(out / "roster.json")
        assert {z.id for z in zones} >= {"331102", "331121"}
        assert next(z for z in zones if z.id == "331102").source_crs == "gcj02"
        pings = list(read_pings(out / "pings.jsonl"))
        assert [p.at for p in pings] == sorted(p.at for p in pings)
        rules = RuleSet(roster, zones)
        assert rules.problems == []
        for p in pings:
            decoded = decode(p.topic, bytes(p.payload), p.at, rules.device_owner, rules.owntracks)
            assert decoded.rejections == []
        truth = json.loads((out / "truth.json").read_text())
        real = [e for e in truth if not e.get("optional")]
        assert real and all(
            {"type", "supervisee", "device", "start", "end"} <= e.keys() for e in truth
        )
        wanted = {
            "buffered_breach": "jurisdiction_exit",
            "leave_transit": None,
            "curfew_late": "curfew_breach",
            "strap_tamper": "strap_tamper",
        }[kind]
        if wanted:
            assert wanted in {e["type"] for e in real}
        if kind == "buffered_breach":
            exit_ = next(e for e in real if e["type"] == "jurisdiction_exit")
            assert exit_["supervisee"] == "S01"


def test_suite_generation_is_deterministic(tmp_path: Path) -> None:
    build("exit_walk", 3, 1, tmp_path / "a")
    build("exit_walk", 3, 1, tmp_path / "b")
    for name in ("zones.geojson", "roster.json", "pings.jsonl", "truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_baseline_alerts_on_a_generated_exit(tmp_path: Path) -> None:
    build("exit_shallow", 1, 0, tmp_path)
    alerts = run_baseline(tmp_path)
    lines = "\n".join(json.dumps(a) for a in alerts)
    parsed, bad = parse_alerts(lines)
    assert bad == 0 and len(parsed) == len(alerts)
    truth = json.loads((tmp_path / "truth.json").read_text())
    tally = match(truth, parsed)
    assert tally.tp >= 1 and tally.fn == 0


def _truth(kind: str, start: int, end: int | None, **kw: object) -> dict:
    return {"type": kind, "supervisee": "S1", "device": "T1", "start": start, "end": end, **kw}


def test_scorer_matching_rules() -> None:
    truth = [
        _truth("jurisdiction_exit", 1_000_000, 2_000_000),
        _truth("jurisdiction_exit", 5_000_000, None, late=True),
        _truth("jurisdiction_exit", 3_000_000, 3_100_000, optional=True),
        _truth("device_offline", 1_000_000, 4_000_000),
        _truth("no_fix", 9_000_000, 9_900_000),
    ]
    alerts = [
        Alert("jurisdiction_exit", "S1", "T1", 1_120_000),  # TP, 120 s late
        Alert("jurisdiction_exit", "S1", "T1", 1_500_000),  # duplicate of the same breach
        Alert("jurisdiction_exit", "S1", "T1", 2_200_000),  # within the 5 min grace: duplicate
        Alert("jurisdiction_exit", "S1", "T1", 3_050_000),  # optional: ignored
        Alert("jurisdiction_exit", "S1", "T1", 4_000_000),  # nothing there: FP
        Alert("jurisdiction_exit", "S1", "T1", 9_000_000, late=True),  # TP, open-ended, late
        Alert("jurisdiction_exit", "S2", "T2", 1_100_000),  # someone else: FP
        Alert("device_offline", "S1", "T9", 2_000_000),  # fault on another device: FP
        Alert("device_offline", "S1", "T1", 1_900_000),  # TP
        Alert("curfew_breach", "S1", "T1", 1_100_000),  # wrong type: FP
    ]
    tally = match(truth, alerts)
    assert (tally.tp, tally.fp, tally.dup, tally.fn, tally.ignored) == (3, 6, 2, 1, 1)
    assert sorted(tally.delays) == [120_000, 900_000, 4_000_000]
    assert (tally.late_truth, tally.late_flagged) == (1, 1)


def test_scorer_reads_replay_output() -> None:
    text = "\n".join(
        [
            '{"type":"no_fix","supervisee":"S1","device":"T1","ts":"2025-11-24T16:00:00.000Z"}',
            "warning: not an alert",
            '{"type":"no_fix","supervisee":"S1","device":"T1","ts":"2025-11-24T16:00:00Z",'
            '"action":"clear"}',
        ]
    )
    alerts, bad = parse_alerts(text)
    assert alerts == [Alert("no_fix", "S1", "T1", T0)] and bad == 1


def test_demo_has_a_tag_out_of_liandu_within_a_minute() -> None:
    zones, roster, plan = build_demo(12, start_ms=T0)
    counties = [f for f in zones["features"] if f["properties"]["kind"] == "jurisdiction"]
    assert len(counties) == 9 and all(f["properties"]["crs"] == "gcj02" for f in counties)
    people = roster["supervisees"]
    assert all(p["jurisdiction"] == ["331102"] for p in people)
    assert any(lv["destinations"] == ["331121"] for p in people for lv in p["leaves"])
    assert any(p["exclusion"] for p in people) and any(p["home"] for p in people)
    assert [d.id for d in plan.devices][:3] == ["T001", "T002", "T003"]
    first = plan.devices[0].track
    where = first.at([T0, T0 + 60_000, T0 + 6 * 3_600_000])
    counties_at = [
        lishui.county_at(float(a), float(o)) for a, o in zip(where.lat, where.lon, strict=False)
    ]
    assert counties_at[0] == lishui.LIANDU
    assert counties_at[1] != lishui.LIANDU and counties_at[2] != lishui.LIANDU


@pytest.mark.parametrize("kind", ["border_drift", "cell_border", "routine_day"])
def test_quiet_scenarios_have_no_real_breach(tmp_path: Path, kind: str) -> None:
    build(kind, 2, 0, tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    breaches = {"jurisdiction_exit", "exclusion_enter", "curfew_breach"}
    assert not [e for e in truth if e["type"] in breaches and not e.get("optional")]


def test_a_phone_left_at_home_is_found_and_a_phone_carried_is_not(tmp_path: Path) -> None:
    """The two 人机分离 kinds through truth and `fencewatch replay`, as the scorer runs them."""
    found = {}
    for kind in ("phone_left_home", "phone_carried"):
        build(kind, 1, 0, tmp_path / kind)
        truth = json.loads((tmp_path / kind / "truth.json").read_text())
        out = io.StringIO()
        replay(tmp_path / kind, out, io.StringIO())
        alerts, bad = parse_alerts(out.getvalue())
        assert bad == 0
        apart = "device_separation"
        truth = [e for e in truth if e["type"] == apart]
        found[kind] = (truth, match(truth, [a for a in alerts if a.type == apart]))
    truth, tally = found["phone_left_home"]
    [apart] = [e for e in truth if e["type"] == "device_separation"]
    assert apart["device"] == "P01" and not apart.get("optional")
    assert apart["earliest"] <= apart["start"]
    assert (tally.tp, tally.fn, tally.fp, tally.dup) == (1, 0, 0, 0)
    truth, tally = found["phone_carried"]
    assert not [e for e in truth if e["type"] == "device_separation" and not e.get("optional")]
    assert (tally.fp, tally.dup) == (0, 0)


def test_checkin_scenarios_are_judged_by_replay_as_their_truth_says(tmp_path: Path) -> None:
    """Check-ins in the scored suite (定位签到): a person who answers every one — no alert;
    one who misses — each miss a checkin_missed; a phone left at home — its owner cannot
    pass the face verification while apart, and misses."""
    tallies = {}
    for kind in ("checkin_kept", "checkin_missed", "phone_left_home"):
        build(kind, 3, 0, tmp_path / kind)
        roster = json.loads((tmp_path / kind / "roster.json").read_text())
        assert roster["supervisees"][0]["checkins"]["face"] is True
        truth = json.loads((tmp_path / kind / "truth.json").read_text())
        out = io.StringIO()
        replay(tmp_path / kind, out, io.StringIO())
        alerts, bad = parse_alerts(out.getvalue())
        assert bad == 0
        truth = [e for e in truth if e["type"] == "checkin_missed"]
        real = [e for e in truth if not e.get("optional")]
        tallies[kind] = (len(real), match(truth, [a for a in alerts if a.type == TYPE]))
    assert tallies["checkin_kept"][0] == 0 and tallies["checkin_kept"][1].fp == 0
    for kind in ("checkin_missed", "phone_left_home"):
        count, tally = tallies[kind]
        assert count >= 1 and (tally.fn, tally.fp) == (0, 0), kind


def test_the_demo_checks_in_two_people_and_one_misses(tmp_path: Path) -> None:
    """The demo's two phone-only people are asked 3, 8 and 15 minutes in: one answers each,
    the other answers late and misses the third, some 20 minutes in."""
    sc = demo_scenario(16, start_ms=T0, hours=0.5)
    write(tmp_path, sc.render(1))
    out = io.StringIO()
    replay(tmp_path, out, io.StringIO())
    alerts, _ = parse_alerts(out.getvalue())
    missed = [a for a in alerts if a.type == "checkin_missed"]
    assert [(a.supervisee, a.device) for a in missed] == [("S016", "P016")]
    assert 19 * 60_000 <= missed[0].ts - T0 <= 21 * 60_000
    checkins = {p["id"]: p.get("checkins") for p in sc.roster_doc()["supervisees"]}
    assert checkins["S015"] == checkins["S016"] and len(checkins["S015"]["times"]) == 3


def test_a_phone_answers_late_or_not_at_all_as_planned() -> None:
    """A check-in or locate-now asks the phone for a fix; this one answers five minutes
    late, and from the second hour not at all (left somewhere, the app killed)."""
    t0 = 1_764_000_000_000
    home = Track(
        np.array([t0, t0 + 3 * 3_600_000], dtype=np.int64),
        np.array([28.45, 28.45]),
        np.array([119.91, 119.91]),
        np.full(2, int(Env.OUTDOOR), dtype=np.int8),
    )
    plan = DevicePlan(
        "PH",
        home,
        kind="phone",
        owntracks="u/ph",
        answer_delay_s=300,
        ignores=((t0 + 3_600_000, None),),
    )
    sim = DeviceSim(plan)
    assert [m.payload["t"] for m in sim.advance(t0 + 60_000)] == ["u"]
    sim.report_location()
    [answer, *_] = sim.advance(t0 + 600_000)
    assert (answer.payload["t"], answer.ts) == ("r", t0 + 60_000 + 300_000)
    sim.advance(t0 + 3_700_000)
    sim.report_location()
    assert "r" not in [m.payload["t"] for m in sim.advance(t0 + 4_500_000)]


def test_people_near_people_scenarios_have_their_truth_and_replay_finds_it(
    tmp_path: Path,
) -> None:
    """A meeting under a no-contact order: a contact for each of the two; people passing
    in the street: none; a market: one gathering naming everyone there, matched by an
    alert on any of them; a protected person walking up (or turning back): as truth says."""
    from io import StringIO

    from fencewatch.replay import replay

    found = {}
    for kind in ("contact_meeting", "contact_passing", "gathering_market", "protected_approach"):
        out = tmp_path / kind
        build(kind, 5, 0, out)
        truth = json.loads((out / "truth.json").read_text())
        printed = StringIO()
        replay(out, printed, StringIO())
        alerts, bad = parse_alerts(printed.getvalue())
        assert bad == 0
        tally = match(truth, alerts)
        assert (tally.fp, tally.fn) == (0, 0), kind
        found[kind] = sorted((e["type"], e["supervisee"]) for e in truth)
    assert found["contact_meeting"] == [("contact", "S01"), ("contact", "S02")]
    assert found["contact_passing"] == []
    assert [t for t, _ in found["gathering_market"]] == ["gathering"]
    assert {t for t, _ in found["protected_approach"]} <= {"protected_proximity"}
