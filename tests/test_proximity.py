"""People near people: the decision (geofence.proximity), and no-contact orders and
gatherings as `fencewatch replay` prints them (geofence.together)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fencewatch.replay import replay
from fencewatch.scenario import ScenarioError, read_roster
from fencewatch.timefmt import iso
from geofence.proximity import APART, UNKNOWN, WITHIN, Run, Sighting, relation, step
from tests.kit import LIANDU, LIANDU_SEAT, T0, line, lishui_collection, offset, square_m

MIN = 60_000


def _at(person: str, east_m: float, north_m: float = 0.0, **kw: Any) -> Sighting:
    lat, lon = offset(LIANDU_SEAT, east_m, north_m)
    return Sighting(person, f"T-{person}", lat, lon, kw.pop("radius", 16.0), kw.pop("ts", T0), **kw)


def test_error_circles_decide_within_apart_or_unknown() -> None:
    a = _at("A", 0)
    assert relation(a, _at("B", 150), 200) == WITHIN  # 150 + 16 + 16 ≤ 200
    assert relation(a, _at("B", 180), 200) == UNKNOWN  # the circles straddle 200 m
    assert relation(a, _at("B", 250), 200) == APART
    # A coarse fix places nobody: not even at the same spot.
    assert relation(a, _at("B", 0, radius=300.0), 200) == UNKNOWN
    # Nor does a stale one: where is B now?
    assert relation(a, _at("B", 0, ts=T0 - 10 * MIN), 200) == UNKNOWN
    # Between two fix times a minute apart, either may have walked 90 m.
    assert relation(a, _at("B", 100, ts=T0 - MIN), 200) == UNKNOWN
    # …or driven further, if they said so.
    assert relation(a, _at("B", 400, ts=T0 - 20_000, speed=15.0), 200) == UNKNOWN


def test_confirmation_needs_time_and_survives_unknowns() -> None:
    r = Run()
    # Two people passing each other: surely within for two minutes, then apart.
    events = [step(r, WITHIN, T0 + k * 30_000) for k in range(5)]
    events += [step(r, APART, T0 + 5 * 30_000)]
    assert events == [None] * 6
    # A real meeting: surely within for five minutes, a coarse fix in between.
    start = T0 + 10 * MIN
    seen = [step(r, WITHIN if k != 4 else UNKNOWN, start + k * 30_000) for k in range(11)]
    assert seen[-1] == "raise" and seen.count("raise") == 1
    stray = start + 12 * MIN
    assert step(r, APART, stray) is None  # one fix apart is not the end
    # …nor is it when the other's next fixes are compared with it.
    assert step(r, APART, stray + 30_000, older=stray) is None
    assert step(r, APART, stray + 60_000, older=stray) is None
    # Multipath puts two or three fixes in a row at one wrong place: not the end either.
    assert step(r, APART, stray + 90_000, older=stray + 80_000) is None
    # Three minutes surely apart, fresh fixes on both sides: it is.
    assert step(r, APART, stray + 190_000, older=stray + 185_000) == "clear"
    # Together again four minutes later: the same episode, its alert reopened.
    again = stray + 430_000
    events = [step(r, WITHIN, again + k * 30_000) for k in range(11)]
    assert events[-1] == "reopen" and "raise" not in events


def _scenario(
    directory: Path,
    tracks: dict[str, list[dict[str, Any]]],
    extra: dict[str, Any],
    zones: list[dict[str, Any]] = (),  # type: ignore[assignment]
    homes: dict[str, str] | None = None,
    extra_pings: list[dict[str, Any]] = (),  # type: ignore[assignment]
    fields: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    doc = lishui_collection()
    (directory / "zones.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [*doc["features"], *zones]})
    )
    people = [
        {
            "id": f"S{device[1:]}",
            "jurisdiction": [LIANDU],
            "home": (homes or {}).get(device),
            "devices": [device],
            **(fields or {}).get(device, {}),
        }
        for device in tracks
    ]
    (directory / "roster.json").write_text(json.dumps({"supervisees": people, **extra}))
    pings = [
        {"at": f["ts"] + 900, "topic": f"em/{d}/loc", "payload": {"v": 1, **f}}
        for d, fixes in tracks.items()
        for f in fixes
    ]
    pings += extra_pings
    pings.sort(key=lambda p: p["at"])
    (directory / "pings.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pings))
    out = directory / "out.jsonl"
    with out.open("w") as stdout, (directory / "err.txt").open("w") as stderr:
        replay(directory, stdout, stderr)
    return [json.loads(x) for x in out.read_text().splitlines()]


ORDER = {"no_contact": [{"id": "NC1", "people": ["S1", "S2"], "distance_m": 200}]}


def test_a_meeting_under_a_no_contact_order_raises_contact(tmp_path: Path) -> None:
    cafe = offset(LIANDU_SEAT, 800, 300)
    tracks = {
        "T1": line(LIANDU_SEAT, cafe, 20) + line(cafe, cafe, 30, t0=T0 + 20 * 30_000, seq0=21),
        "T2": line(offset(cafe, 1500, 0), cafe, 20)
        + line(offset(cafe, 30, 10), offset(cafe, 30, 10), 30, t0=T0 + 20 * 30_000, seq0=21),
    }
    alerts = _scenario(tmp_path, tracks, ORDER)
    # One alert for each of the two, to each one's office.
    assert sorted((a["type"], a["supervisee"], a["detail"]["with"]) for a in alerts) == [
        ("contact", "S1", "S2"),
        ("contact", "S2", "S1"),
    ]
    # Confirmed five minutes after they were surely together, with both positions.
    detail = alerts[0]["detail"]
    assert {p["supervisee"] for p in detail["positions"]} == {"S1", "S2"}
    assert detail["apart_m"] < 100


def test_passing_on_a_street_raises_nothing(tmp_path: Path) -> None:
    west, east = offset(LIANDU_SEAT, -1500, 0), offset(LIANDU_SEAT, 1500, 0)
    # Walking toward each other along the same street at 1.7 m/s, and on past.
    tracks = {"T1": line(west, east, 60), "T2": line(east, west, 60)}
    assert _scenario(tmp_path, tracks, ORDER) == []


def test_coarse_fixes_never_raise_contact(tmp_path: Path) -> None:
    spot = offset(LIANDU_SEAT, 500, 500)
    tracks = {"T1": line(spot, spot, 40), "T2": line(spot, spot, 40, acc=150.0)}
    assert _scenario(tmp_path, tracks, ORDER) == []


def test_three_at_a_market_are_one_gathering_but_not_at_home(tmp_path: Path) -> None:
    market = offset(LIANDU_SEAT, -900, 400)
    stay = 50  # 25 minutes
    tracks = {
        f"T{n}": line(offset(market, 20 * n, -15 * n), offset(market, 20 * n, -15 * n), stay)
        for n in (1, 2, 3)
    }
    alerts = _scenario(tmp_path, tracks, {"gathering": {}})
    assert [(a["type"], a["detail"]["people"]) for a in alerts] == [
        ("gathering", ["S1", "S2", "S3"])
    ]
    # The same three at S1's home (a curfew zone around it): S2 and S3 are only two.
    home = square_m("home1", "home", market, 120)
    quiet = _scenario(tmp_path, tracks, {"gathering": {}}, [home], {"T1": "home1"})
    assert quiet == []


def test_co_workers_at_their_workplace_are_no_gathering_but_at_a_market_are(
    tmp_path: Path,
) -> None:
    factory = offset(LIANDU_SEAT, 1200, -600)
    market = offset(factory, -1500, 800)

    # Three hours at the factory bench, an hour and a half at the market at lunch.
    def day(n: int) -> list[dict[str, Any]]:
        bench = offset(factory, 25 * n, -20 * n)
        stall = offset(market, 20 * n, -15 * n)
        work = line(bench, bench, 360)
        walk = line(bench, stall, 30, t0=T0 + 360 * 30_000, seq0=361)
        return work + walk + line(stall, stall, 180, t0=T0 + 390 * 30_000, seq0=391)

    tracks = {f"T{n}": day(n) for n in (1, 2, 3)}
    place = {"lat": factory[0], "lon": factory[1], "radius_m": 150, "name": "五金厂"}
    at_work = {d: {"workplace": place} for d in tracks}
    alerts = _scenario(tmp_path, tracks, {"gathering": {}}, fields=at_work)
    # One gathering, raised at the market (20 minutes after they met there), none at work.
    assert [(a["type"], a["detail"]["people"]) for a in alerts] == [
        ("gathering", ["S1", "S2", "S3"])
    ]
    assert alerts[0]["detail"]["start"] >= T0 + 360 * 30_000  # once they left work
    # The factory drawn as a zone instead of a place: the same.
    zone = square_m("factory", "home", factory, 150)
    by_zone = {d: {"workplace": "factory"} for d in tracks}
    again = _scenario(tmp_path, tracks, {"gathering": {}}, [zone], fields=by_zone)
    assert [a["detail"]["people"] for a in again] == [["S1", "S2", "S3"]]
    # With no workplace, the morning at the bench is already the gathering.
    bench = _scenario(tmp_path, tracks, {"gathering": {}})
    assert [a["detail"]["start"] for a in bench] == [T0]


def test_one_who_joins_an_open_gathering_is_added_to_it_but_not_from_home(
    tmp_path: Path,
) -> None:
    market = offset(LIANDU_SEAT, -900, 400)
    # Three for fifty minutes; twenty-five minutes in, S4 stops among them, and S5 comes
    # home to the flat over the market.
    stall = {n: offset(market, 20 * n, -15 * n) for n in range(1, 6)}
    tracks = {f"T{n}": line(stall[n], stall[n], 100) for n in (1, 2, 3)}
    later = T0 + 25 * MIN
    tracks |= {f"T{n}": line(stall[n], stall[n], 50, t0=later) for n in (4, 5)}
    flat = square_m("home5", "home", stall[5], 30)
    [alert] = _scenario(tmp_path, tracks, {"gathering": {}}, [flat], {"T5": "home5"})
    assert alert["detail"]["people"] == ["S1", "S2", "S3"]
    # Then S4, confirmed as the first three were (twenty minutes surely within 100 m of
    # each), joins it: no second alert, a note naming the same alert and S4 only.
    [note] = (tmp_path / "err.txt").read_text().splitlines()
    said = re.fullmatch(r"joined (\S+) at (\S+): (.*)", note)
    assert said is not None, note
    key, at, joined = said.groups()
    assert key == alert["key"] and joined == "S4"
    assert at >= iso(later + 20 * MIN)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"no_contact": [{"people": ["S1"]}]}, "people must list two or more"),
        ({"no_contact": [{"people": ["S1", "S2"], "distance_m": -5}]}, "positive number"),
        ({"gathering": {"size": 1}}, "2 or more"),
        ({"gathering": {}, "workplace": {"lat": 28.4}}, "lon"),
        ({"gathering": {}, "workplace": {"lat": 28.4, "lon": 119.9, "radius_m": 1}}, "10 to"),
    ],
)
def test_a_bad_order_is_refused_with_its_reason(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    path = tmp_path / "roster.json"
    first = {"id": "S1", **({"workplace": extra.pop("workplace")} if "workplace" in extra else {})}
    path.write_text(json.dumps({"supervisees": [first, {"id": "S2"}], **extra}))
    with pytest.raises(ScenarioError, match=message):
        read_roster(path)


def test_a_restarted_watcher_takes_up_where_it_stopped() -> None:
    from geofence.model import NoContact
    from geofence.together import Together, TogetherState

    def meeting(k: int) -> list[Sighting]:
        ts = T0 + k * 30_000
        return [_at("S1", 0, ts=ts), _at("S2", 40, ts=ts + 1000)]

    order = [NoContact("NC1", ("S1", "S2"))]
    first = Together(order)
    assert [v for k in range(6) for s in meeting(k) for v in first.see(s)] == []
    saved = msgspec.msgpack.encode(first.state())
    again = Together(order)
    again.load(msgspec.msgpack.decode(saved, type=TogetherState))
    raised = [v for k in range(6, 12) for s in meeting(k) for v in again.see(s)]
    # Confirmed five minutes after the meeting began, before the restart: once each.
    assert sorted((v.action, v.supervisee) for v in raised) == [("raise", "S1"), ("raise", "S2")]
    assert raised[0].detail["start"] == T0 + 1000


def test_a_protection_ended_leaves_no_trace_in_a_watcher_taking_up_the_state() -> None:
    from geofence.model import DeviceRef, Protection
    from geofence.together import Together, TogetherState

    guarded = Protection("PP1", "S1", DeviceRef("V1", "phone", owntracks="v/p"))
    first = Together(protected=[guarded])
    first.see(_at("S1", 0, ts=T0))
    first.see(_at(guarded.person, 2000, ts=T0 + 1000))
    saved = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()), type=TogetherState)
    assert set(saved.latest) == {"S1", "protected:PP1"} and saved.contacts
    ended = Together(protected=[])
    ended.load(saved)
    assert set(ended.state().latest) == {"S1"} and not ended.state().contacts


def test_a_protected_person_walking_up_to_the_supervisee_raises_protected_proximity(
    tmp_path: Path,
) -> None:
    shop = offset(LIANDU_SEAT, 400, -300)
    tracks = {"T1": line(shop, shop, 60)}
    protected = {
        "protected": [
            {
                "id": "PP1",
                "supervisee": "S1",
                "device": {"id": "V1", "kind": "phone", "owntracks": "victim/phone"},
                "distance_m": 500,
                "sms": "+8613800000000",
            }
        ]
    }
    # The protected person's phone (OwnTracks) walks from 2 km away to 60 m from the shop.
    walk = line(offset(shop, 2000, 0), offset(shop, 60, 0), 60)
    phone = [
        {
            "at": f["ts"] + 1500,
            "topic": "owntracks/victim/phone",
            "payload": {
                "_type": "location",
                "lat": f["lat"],
                "lon": f["lon"],
                "acc": 8,
                "tst": f["ts"] // 1000,
            },
        }
        for f in walk
    ]
    alerts = _scenario(tmp_path, tracks, protected, extra_pings=phone)
    assert [(a["type"], a["supervisee"], a["detail"]["order"]) for a in alerts] == [
        ("protected_proximity", "S1", "PP1")
    ]
    detail = alerts[0]["detail"]
    # Surely within 500 m, circles and a walk's worth of time between the fixes included.
    # Their number is not copied into the alert: the warning reads it from the order.
    assert detail["apart_m"] < 400 and "sms" not in detail
    assert detail["protected"]["device"] == "V1"
    # The protected person is nobody's supervisee: loading them is refused, not dropped.
    with pytest.raises(ScenarioError, match="device T1 is a supervisee's"):
        bad = {
            **protected["protected"][0],
            "device": {"id": "T1", "kind": "phone", "owntracks": "a/b"},
        }
        path = tmp_path / "bad.json"
        path.write_text(
            json.dumps({"supervisees": [{"id": "S1", "devices": ["T1"]}], "protected": [bad]})
        )
        read_roster(path)


async def test_a_gathering_alert_goes_to_every_listed_persons_office(pg_dsn: str) -> None:
    from alerts.routing import alert_first_contacts
    from fencewatch.scenario import parse_supervisee
    from storage.db import open_pool
    from storage.repo import offices as offices_repo
    from storage.repo import people as people_repo

    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            for office, phone in (("ST-A", "0578-1111"), ("ST-B", "0578-2222")):
                await offices_repo.upsert_office(conn, office, office, "station", None, None, phone)
            people = [
                parse_supervisee({"id": p, "office": office})
                for p, office in (("G1", "ST-A"), ("G2", "ST-B"), ("G3", "ST-A"))
            ]
            await people_repo.load_supervisees(conn, people)
            gathering = {
                "type": "gathering",
                "supervisee_id": "G1",
                "detail": {"people": ["G1", "G2", "G3"]},
            }
            level, told = await alert_first_contacts(conn, gathering)
            assert level == 1
            assert sorted(c.phone for c in told) == ["0578-1111", "0578-2222"]
            # Any other alert goes to its own person's office only.
            contact = {**gathering, "type": "contact"}
            assert [c.phone for c in (await alert_first_contacts(conn, contact))[1]] == [
                "0578-1111"
            ]
    finally:
        await pool.close()


def test_a_supervisees_phone_on_a_protected_phones_topic_stays_the_supervisees() -> None:
    """Were one registered behind the loader's back: supervision never loses a fix."""
    from geofence.model import DeviceRef, Protection, Roster, Supervisee
    from geofence.ruleset import RuleSet
    from ingest.decode import decode_protected

    phone = DeviceRef("P1", "phone", owntracks="a/b")
    people = [Supervisee("S1", devices=(phone,))]
    guarded = [Protection("PP1", "S1", DeviceRef("V1", "phone", owntracks="a/b"))]
    rules = RuleSet(Roster("Asia/Shanghai", people, protected=guarded), [])
    payload = json.dumps({"_type": "location", "lat": 28.4, "lon": 119.9, "tst": T0 // 1000})
    assert decode_protected(rules, "owntracks/a/b", payload.encode(), T0) is None
    mine = RuleSet(Roster("Asia/Shanghai", [Supervisee("S1")], protected=guarded), [])
    taken = decode_protected(mine, "owntracks/a/b", payload.encode(), T0)
    assert taken is not None and [f.device for f in taken.fixes] == ["V1"]
