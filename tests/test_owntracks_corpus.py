"""OwnTracks as the apps really send it (tests/corpus/owntracks/, copied from the OwnTracks
project's own fixtures): every case decodes as the index says, with each fix's values read
off its payload (-1 and the like as "not available"); arrays keep their good elements; a
real iPhone's recording decodes whole; over the real Mosquitto every well-formed location
is stored and the rest recorded, ignored or rejected with reasons, the service healthy;
and the iPhone's drive, laid across 莲都区's border, raises a jurisdiction_exit in replay.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from collections import Counter
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fencewatch.replay import replay
from fencewatch.timefmt import iso
from geofence.engine import Engine
from geofence.model import Fix, Roster
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from ingest.decode import Decoded, DetailedEvent, decode
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection, offset
from tests.live import eventually, running, write_scenario

CORPUS = Path(__file__).resolve().parent / "corpus" / "owntracks"
_TST = re.compile(rb'("tst"\s*:\s*"?)(0|[1-9][0-9]*)(?![0-9])')  # JSON numbers only


@cache
def index() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    return loaded


def _payload(case: dict[str, Any]) -> bytes:
    return (CORPUS / case["file"]).read_bytes()


def _latest_tst(payload: bytes) -> int | None:
    found = [int(t) for _, t in _TST.findall(payload)]
    return max(found) if found else None


def _decode(topic: str, payload: bytes, at: int) -> Decoded:
    return decode(topic, payload, at, index()["devices"], index()["owntracks"])


def _arrival(payload: bytes) -> int:
    """Five seconds after the case's latest fix: the fixtures were taken years apart."""
    latest = _latest_tst(payload)
    return 1_764_240_000_123 if latest is None else latest * 1000 + 5000


def _locations(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [m for m in items if isinstance(m, dict) and m.get("_type") == "location"]


def _unavailable(value: Any, *also: float) -> Any:
    return None if value is None or value == -1 or value in also else value


def _check_values(fix: Fix, raw: dict[str, Any]) -> None:
    """The fix says what the app said, with "not available" as None."""
    assert (fix.lat, fix.lon) == (raw["lat"], raw["lon"])
    assert fix.seq == int(raw["tst"]) and fix.ts // 1000 == int(raw["tst"])
    assert fix.acc == _unavailable(raw.get("acc"), 0)
    vel = _unavailable(raw.get("vel"))
    assert fix.spd == (None if vel is None else pytest.approx(vel / 3.6))
    assert fix.hdg == _unavailable(raw.get("cog"))
    assert fix.batt == _unavailable(raw.get("batt"))
    assert fix.chg == {None: None, 0: None, 1: False, 2: True, 3: True}[raw.get("bs")]


def test_the_index_lists_every_file() -> None:
    listed = {c["file"] for c in index()["cases"] + index()["recordings"]}
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*") if p.is_file()}
    assert listed == on_disk


@pytest.mark.parametrize("case", [pytest.param(c, id=c["file"]) for c in index()["cases"]])
def test_corpus_case(case: dict[str, Any]) -> None:
    payload = _payload(case)
    out = _decode(case["topic"], payload, _arrival(payload))
    expect = case["expect"]
    assert [r.reason for r in out.rejections] == expect.get("rejected", []), out.rejections
    assert all(r.detail and r.topic == case["topic"] for r in out.rejections)
    assert [e.type for e in out.events] == expect.get("events", [])
    assert [i.reason for i in out.ignored] == expect.get("ignored", [])
    assert len(out.fixes) == expect.get("fixes", 0)
    if out.fixes:
        for fix, raw in zip(out.fixes, _locations(json.loads(payload)), strict=True):
            _check_values(fix, raw)


def _case(file: str) -> dict[str, Any]:
    return next(c for c in index()["cases"] if c["file"] == file)


def _one_fix(file: str) -> Fix:
    payload = _payload(_case(file))
    out = _decode("owntracks/alice/phone", payload, _arrival(payload))
    assert len(out.fixes) == 1, out
    return out.fixes[0]


def test_not_available_is_none_and_the_fix_is_kept() -> None:
    ios = _one_fix("recorder/hooks-location.json")  # cog, vel, vac, batt: -1
    assert (ios.acc, ios.spd, ios.hdg, ios.batt) == (5.0, None, None, None)
    relayed = _one_fix("json-schema/l2.json")  # acc -1
    assert relayed.acc is None and relayed.batt == 6
    full = _one_fix("android/location_deserialize_extended.json")  # bs 3: full, on charge
    assert full.chg is True and full.acc == 1600 and full.hdg == 56


def test_an_array_keeps_its_good_elements() -> None:
    parts = [
        "json-schema/l.json",
        "json-schema/location-lat-missing.json",
        "json-schema/card-vw.json",
        "json-schema/lwt.json",
        "json-schema/transition-illegal-lat.json",
    ]
    elements = [json.loads(_payload(_case(p))) for p in parts]
    payload = msgspec.json.encode(elements)
    out = _decode("owntracks/alice/phone", payload, _arrival(payload))
    assert len(out.fixes) == 1 and [e.type for e in out.events] == ["lwt"]
    assert [i.reason for i in out.ignored] == ["owntracks_card"]
    assert [(r.reason, r.detail.split(":")[0]) for r in out.rejections] == [
        ("schema", "element 1"),
        ("schema", "element 4"),
    ]
    # Each rejected element is kept with its own bytes, for the operator to read.
    assert [json.loads(r.payload) for r in out.rejections] == [elements[1], elements[4]]


def test_time_as_a_string_and_ms_dedup_scheme() -> None:
    payload = _payload(_case("json-schema/location-short.json"))
    at = _arrival(payload)
    tst = _latest_tst(payload)
    as_string = _TST.sub(rb'\g<1>"%d"' % tst, payload, count=1)
    first = _decode("owntracks/alice/phone", payload, at).fixes[0]
    assert _decode("owntracks/alice/phone", as_string, at).fixes == [first]
    # A redelivery is the very same fix; another position in the same second is another.
    assert _decode("owntracks/alice/phone", payload, at + 9000).fixes[0].ts == first.ts
    moved = payload.replace(b'"lat":44.221389', b'"lat":44.221399')
    other = _decode("owntracks/alice/phone", moved, at).fixes[0]
    assert other.seq == first.seq and other.ts != first.ts
    assert other.ts // 1000 == first.ts // 1000 == tst


def _recording() -> list[tuple[int, bytes]]:
    """(arrival ms, payload) of each line the recorder stored."""
    out = []
    for line in (CORPUS / "recorder" / "demo-iphone.rec").read_bytes().splitlines():
        received, _flag, payload = line.split(b"\t", 2)
        at = datetime.fromisoformat(received.decode().replace("Z", "+00:00"))
        out.append((int(at.timestamp() * 1000), payload))
    return out


def test_a_real_iphones_recording_decodes_whole() -> None:
    fixes, events = [], []
    for at, payload in _recording():
        out = _decode("owntracks/alice/phone", payload, at)
        assert out.rejections == [], out.rejections
        fixes += out.fixes
        events += out.events
    expect = index()["recordings"][0]["expect"]
    assert len(fixes) == expect["fixes"] and [e.type for e in events] == expect["events"]
    assert sum(f.spd is None and f.hdg is None for f in fixes) >= 15  # iOS: vel, cog -1
    for e in events:  # the will's tst came as a string; the event is its arrival
        assert isinstance(e, DetailedEvent) and e.ts == e.at
        assert e.detail == {"connected_at": 1_440_363_922_000}


def test_an_lwt_shortens_the_offline_watchdog() -> None:
    from fencewatch.scenario import parse_supervisee

    device = {"id": "P1", "kind": "phone", "owntracks": "alice/phone"}
    person = parse_supervisee({"id": "S1", "jurisdiction": [LIANDU], "devices": [device]})
    engine = Engine(
        RuleSet(Roster("Asia/Shanghai", [person]), parse_feature_collection(lishui_collection()))
    )
    payload = _payload(_case("json-schema/lwt.json"))
    at = _arrival(payload)
    out = _decode("owntracks/alice/phone", payload, at)
    engine.process([], out.events)
    # iOS drops its connection after every background publish: a will alone is no alarm…
    assert engine.tick(at + 10 * 60_000) == []
    # …but silence 20 minutes after it is, where a phone is otherwise given an hour.
    verdicts = engine.tick(at + 21 * 60_000)
    assert [(v.type, v.detail["cause"]) for v in verdicts] == [
        ("device_offline", "connection_lost")
    ]


# --- over the real Mosquitto ---------------------------------------------------------------

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "S1",
            "jurisdiction": [LIANDU],
            "devices": [{"id": "P1", "kind": "phone", "owntracks": "alice/phone"}],
        }
    ],
}


def _shifted(payload: bytes, latest: int) -> bytes:
    """The payload with its times moved so that its latest `tst` is `latest`."""
    own = _latest_tst(payload)
    if own is None:
        return payload

    def move(m: re.Match[bytes]) -> bytes:
        tst = int(m.group(2))
        return m.group(1) + (str(tst + latest - own).encode() if tst else b"0")

    return _TST.sub(move, payload)


def _ignored(metrics: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics):
        if family.name == "fencewatch_messages_ignored":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["reason"]] = int(sample.value)
    return out


async def test_the_corpus_over_the_real_broker(pg_dsn: str, redis_url: str, mqtt_url: str) -> None:
    cases = index()["cases"]
    now_s = int(time.time())
    # Each case a minute apart, so no two cases' fixes share a second; the recording (2.8 h
    # long) before them all, arriving now as a phone's backlog would.
    messages = [
        (c["topic"], _shifted(_payload(c), now_s - 60 * (len(cases) - k)))
        for k, c in enumerate(cases)
    ]
    recording = [p for _, p in _recording()]
    latest = max(_latest_tst(p) or 0 for p in recording)
    start_s = now_s - 60 * (len(cases) + 1)
    messages += [
        ("owntracks/alice/phone", _shifted(p, start_s - latest + (_latest_tst(p) or 0)))
        for p in recording
    ]
    wanted = [*cases, *index()["recordings"]]
    fixes = sum(c["expect"].get("fixes", 0) for c in wanted)
    events = Counter(t for c in wanted for t in c["expect"].get("events", []))
    rejected = Counter(r for c in cases for r in c["expect"].get("rejected", []))
    ignored = Counter(r for c in cases for r in c["expect"].get("ignored", []))
    final = _shifted(_payload(_case("json-schema/l.json")), now_s)

    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        before = _ignored((await live.http.get("/metrics")).text)
        for topic, body in messages:
            live.device.publish(topic, body)
        live.device.publish("owntracks/alice/phone", final)
        pool = live.service.pool

        async def all_stored() -> bool:
            # One publisher's messages are handled in order: the last stored, all are.
            count = await pool.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'P1'")
            return bool(count == fixes + 1 and live.service.backlog == 0)

        await eventually(all_stored, "not every well-formed location was stored")
        span = (iso((start_s - 4 * 3600) * 1000), iso((now_s + 60) * 1000))
        track = await live.track("S1", *span)
        assert len(track) == fixes + 1 and {f["properties"]["device"] for f in track} == {"P1"}
        assert any(f["properties"]["acc"] is None for f in track)  # acc -1 stored as unknown

        rows = await pool.fetch("SELECT type, detail FROM device_events WHERE device_id = 'P1'")
        stored = Counter(r["type"] for r in rows)
        assert stored["transition"] == events["transition"] and stored["status"] == 1
        # Two wills of one connection arriving in the same millisecond are one row.
        assert events["lwt"] - 1 <= stored["lwt"] <= events["lwt"]
        assert all(
            r["detail"]["event"] in ("enter", "leave") for r in rows if r["type"] == "transition"
        )

        reasons = await pool.fetch("SELECT topic, reason FROM rejected_messages")
        assert Counter(r["reason"].split(":", 1)[0] for r in reasons) == rejected
        assert all(r["topic"].startswith("owntracks/alice/phone") for r in reasons)
        after = _ignored((await live.http.get("/metrics")).text)
        assert after - before == ignored
        assert (await live.http.get("/healthz")).status_code == 200


# --- replay: the iPhone's drive out of the county ------------------------------------------


def _laid_over_liandu(recording: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """The recorded drive moved to start at 莲都's seat and mirrored east-west (it heads
    east; westwards from 丽水 is land all the way), every other byte of each payload kept."""
    first = json.loads(next(p for _, p in recording if b'"location"' in p))
    lat0, lon0 = first["lat"], first["lon"]
    pings = []
    for at, payload in recording:
        body = json.loads(payload)
        if body.get("_type") == "location":
            north = (body["lat"] - lat0) * 111_195.0
            east = (body["lon"] - lon0) * 111_195.0 * math.cos(math.radians(lat0))
            body["lat"], body["lon"] = offset(LIANDU_SEAT, -east, north)
        pings.append({"at": at, "topic": "owntracks/alice/phone", "payload": body})
    return pings


def test_an_iphone_driving_out_of_the_county_is_alerted(tmp_path: Path) -> None:
    write_scenario(tmp_path, lishui_collection(), ROSTER)
    pings = _laid_over_liandu(_recording())
    (tmp_path / "pings.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pings))
    out, err = io.StringIO(), io.StringIO()
    replay(tmp_path, out, err)
    assert "rejected" not in err.getvalue()
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    exits = [a for a in alerts if a["type"] == "jurisdiction_exit"]
    assert len(exits) == 1 and exits[0]["device"] == "P1" and exits[0]["supervisee"] == "S1"
