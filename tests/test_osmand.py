"""The OsmAnd protocol (spec 4.1b) decoded: Traccar's own decoder tests and the Traccar
Client's formatter tests (tests/corpus/osmand/), each request to the fix or rejection it
must give; hostile and broken requests rejected with a reason; replay dispatching topic
`osmand`; shards subscribing their phones' `osmand/<device>`."""

from __future__ import annotations

import io
import json
import math
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fencewatch.replay import replay
from fencewatch.timefmt import iso
from geofence.ruleset import RuleSet
from ingest import osmand, topics
from ingest.decode import Decoded, decode
from ingest.shards import Shard
from tests.kit import (
    LIANDU,
    LIANDU_SEAT,
    border_crossing,
    line,
    lishui_collection,
    qingtian_point,
    roster,
)

CORPUS = Path(__file__).resolve().parent / "corpus" / "osmand"
AT = 1764240000123  # arrival for requests that carry no time of their own
REASONS = {"too_large", "malformed", "schema", "unknown_device", "out_of_range", "topic"}
REASONS |= {"ts_future", "ts_too_old"}


@cache
def corpus() -> list[dict[str, Any]]:
    out = []
    for path in sorted(CORPUS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["source"]["licence"] and doc["source"]["repository"] and doc["source"]["path"]
        out += doc["requests"]
    return out


def phones() -> dict[str, str]:
    """Every OsmAnd id in the corpus registered, as P1, P2…"""
    ids = sorted({r["expect"]["id"] for r in corpus() if "id" in r["expect"]})
    return {osmand_id: f"P{n}" for n, osmand_id in enumerate(ids, 1)}


def owners() -> dict[str, str]:
    return {device: f"S{device}" for device in phones().values()}


def request(case: dict[str, Any], at: int) -> Decoded:
    """Decode a request as the listener does: its message, then decode() on topic osmand."""
    body = case.get("body", "").encode()
    payload = osmand.request_payload(
        urlsplit(case["url"]).query, case.get("content_type", ""), body, at
    )
    return decode(topics.OSMAND, payload, at, owners(), {}, phones())


def query(text: str, at: int = AT, content_type: str = "", body: bytes = b"") -> Decoded:
    payload = osmand.request_payload(text, content_type, body, at)
    return decode(topics.OSMAND, payload, at, {"P1": "S1"}, {}, {"123456": "P1"})


def reasons(out: Decoded) -> list[str]:
    assert all(r.detail and r.topic == topics.OSMAND for r in out.rejections)
    return [r.reason for r in out.rejections]


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c["case"])
def test_corpus_request_decodes_as_expected(case: dict[str, Any]) -> None:
    want = case["expect"]
    ts = want.get("ts")
    at = ts + 5_000 if isinstance(ts, int) and ts > 0 else AT
    out = request(case, at)
    assert [e.type for e in out.events] == want.get("events", [])
    if "reject" in want:
        assert reasons(out) == [want["reject"]] and out.fixes == []
        return
    assert reasons(out) == []
    [fix] = out.fixes
    assert fix.device == phones()[want["id"]]
    assert fix.ts == (at if ts == "arrival" else ts) and fix.seq == fix.ts // 1000
    for field in ("lat", "lon", "acc", "spd", "hdg", "batt", "chg"):
        if field in want:
            got, expected = getattr(fix, field), want[field]
            assert got == expected or math.isclose(got, expected), (field, got, expected)


def test_every_corpus_phone_and_form_is_covered() -> None:
    cases = corpus()
    assert {c["method"] for c in cases} == {"GET", "POST"}
    assert sum("body" in c for c in cases) == 4
    assert len({c["case"] for c in cases}) == len(cases)


def test_the_traccar_client_sos_and_its_position_are_judged_apart() -> None:
    """The client's SOS comes with its last position: a good one is a fix and an sos event,
    one at null island is rejected while the SOS stands."""
    out = query("id=123456&timestamp=1764240000&lat=28.45&lon=119.91&alarm=sos")
    assert [e.type for e in out.events] == ["sos"] and len(out.fixes) == 1
    assert out.events[0].seq == out.fixes[0].seq == 1764240000
    out = query("id=123456&timestamp=1764240000&lat=0&lon=0&alarm=sos")
    assert [e.type for e in out.events] == ["sos"] and reasons(out) == ["out_of_range"]
    body = {
        "device_id": "123456",
        "location": {
            "timestamp": "2025-11-27T10:40:00Z",
            "coords": {"latitude": 28.45, "longitude": 119.91, "accuracy": 12},
            "extras": {"alarm": "sos"},
        },
    }
    out = query("", body=json.dumps(body).encode(), content_type="application/json")
    assert [e.type for e in out.events] == ["sos"] and out.fixes[0].acc == 12


def test_not_available_values_are_unknowns() -> None:
    """iOS: speed and course −1, battery −100 %; Android: accuracy 0."""
    out = query(
        "id=123456&timestamp=1764240000&lat=28.45&lon=119.91&speed=-1&bearing=-1"
        "&accuracy=0&batt=-100&charge=true"
    )
    [fix] = out.fixes
    assert (fix.spd, fix.hdg, fix.acc, fix.batt, fix.chg) == (None, None, None, None, True)


def test_time_forms_agree() -> None:
    forms = [
        "1764240000",
        "1764240000000",
        "2025-11-27T10:40:00Z",
        "2025-11-27T18:40:00%2B08:00",
        "2025-11-27+10:40:00",
        "2025-11-27T10:40:00",
    ]
    for form in forms:
        out = query(f"id=123456&lat=28.45&lon=119.91&timestamp={form}")
        assert [f.ts for f in out.fixes] == [1764240000000], form


def test_a_request_without_time_keeps_its_arrival_time() -> None:
    """The listener writes the arrival time into the message: the shard may read it later."""
    payload = osmand.request_payload("id=123456&lat=28.45&lon=119.91", "", b"", AT)
    assert msgspec.json.decode(payload) == f"id=123456&lat=28.45&lon=119.91&timestamp={AT}"
    later = decode(topics.OSMAND, payload, AT + 60_000, {"P1": "S1"}, {}, {"123456": "P1"})
    assert [f.ts for f in later.fixes] == [AT]


def test_form_posts_and_json_posts_become_messages_as_replay_records_them() -> None:
    form = osmand.request_payload("", "application/x-www-form-urlencoded", b"id=1&timestamp=5", AT)
    assert msgspec.json.decode(form) == "id=1&timestamp=5"
    body = b'{"device_id":"1","location":{"timestamp":"2025-11-27T10:40:00Z"}}'
    assert osmand.request_payload("", "application/json; charset=utf-8", body, AT) == body
    assert osmand.request_payload("", "text/plain", body, AT) == body


def test_a_report_without_a_fix() -> None:
    [fix] = query("id=123456&timestamp=1764240000&lat=28.45&lon=119.91&valid=false").fixes
    assert fix.lat is None and fix.lon is None
    body = b'{"device_id":"123456","location":{"timestamp":"2025-11-27T10:40:00Z"}}'
    [fix] = query("", body=body, content_type="application/json").fixes
    assert fix.lat is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("lat=28.45&lon=119.91&timestamp=1764240000", "schema"),
        ("id=999&lat=28.45&lon=119.91&timestamp=1764240000", "unknown_device"),
        ("id=123456&lat=28.45&timestamp=1764240000", "schema"),
        ("id=123456&location=28.45&timestamp=1764240000", "schema"),
        ("id=123456&lat=NaN&lon=119.91&timestamp=1764240000", "schema"),
        ("id=123456&lat=1e999&lon=119.91&timestamp=1764240000", "out_of_range"),
        ("id=123456&lat=95&lon=119.91&timestamp=1764240000", "out_of_range"),
        ("id=123456&lat=28.45&lon=119.91&speed=fast&timestamp=1764240000", "schema"),
        ("id=123456&lat=28.45&lon=119.91&speed=3000&timestamp=1764240000", "out_of_range"),
        ("id=123456&lat=28.45&lon=119.91&batt=180&timestamp=1764240000", "out_of_range"),
        ("id=123456&lat=28.45&lon=119.91&timestamp=yesterday", "schema"),
        ("id=123456&lat=28.45&lon=119.91&timestamp=1764240000.5", "schema"),
        ("id=123456&lat=28.45&lon=119.91&timestamp=0", "out_of_range"),
        ("id=123456&lat=28.45&lon=119.91&timestamp=1970-01-01T00:00:00Z", "out_of_range"),
        ("id=123456&lat=28.45&lon=119.91&timestamp=2025-11-27+18:40:00", "ts_future"),
        ("id=123456&lat=28.45&lon=119.91&timestamp=1600000000", "ts_too_old"),
        ("id=123456&lat=0.0&lon=0.0&timestamp=1764240000", "out_of_range"),
        ("id=123456&lat=%ff&lon=1&timestamp=1764240000", "schema"),
        ("&".join(f"k{i}=1" for i in range(200)) + "&id=123456", "too_large"),
    ],
)
def test_bad_query_is_rejected_with_its_reason(text: str, reason: str) -> None:
    out = query(text)
    assert reasons(out) == [reason] and out.fixes == [] and out.events == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed"),
        (b'[{"id":"123456","lat":28.45,"lon":119.91,"timestamp":1764240000}]', "schema"),
        (b'{"device_id":123456,"location":{"timestamp":"2025-11-27T10:40:00Z"}}', "schema"),
        (b'{"device_id":"123456"}', "schema"),
        (b'{"device_id":"","location":{"timestamp":"2025-11-27T10:40:00Z"}}', "schema"),
        (b'{"device_id":"123456","location":{"timestamp":"soon"}}', "schema"),
        (
            b'{"device_id":"123456","location":{"timestamp":"2025-11-27T10:40:00Z",'
            b'"coords":{"latitude":"28.45","longitude":119.91}}}',
            "schema",
        ),
        (
            b'{"device_id":"123456","location":{"timestamp":"2025-11-27T10:40:00Z",'
            b'"coords":{"latitude":28.45,"longitude":119.91,"heading":400}}}',
            "out_of_range",
        ),
        (
            b'{"device_id":"123456","location":{"timestamp":"2025-11-27T10:40:00Z"}}' * 2,
            "malformed",
        ),
        (b"{" + b" " * 300_000 + b"}", "too_large"),
    ],
)
def test_bad_body_is_rejected_with_its_reason(body: bytes, reason: str) -> None:
    out = query("", body=body, content_type="application/json")
    assert reasons(out) == [reason] and out.fixes == []


def test_on_its_shard_topic_the_request_must_be_that_devices() -> None:
    payload = osmand.request_payload(
        "id=123456&lat=28.45&lon=119.91&timestamp=1764240000", "", b"", AT
    )
    devices, ids = {"P1": "S1", "P2": "S2"}, {"123456": "P1"}
    assert decode(topics.osmand("P1"), payload, AT, devices, {}, ids).fixes
    out = decode(topics.osmand("P2"), payload, AT, devices, {}, ids)
    assert [r.reason for r in out.rejections] == ["topic"]
    out = decode(topics.OSMAND, payload, AT, devices, {})  # no OsmAnd phones registered
    assert [r.reason for r in out.rejections] == ["unknown_device"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.binary(max_size=300), st.sampled_from(["", "application/json"]))
def test_nothing_a_phone_sends_raises(text: str, body: bytes, content_type: str) -> None:
    out = query(text, content_type=content_type, body=body)
    assert set(reasons(out)) <= REASONS
    assert out.fixes or out.events or out.rejections


def _rules() -> RuleSet:
    person = {"devices": [{"id": "P1", "kind": "phone", "osmand": "123456"}, "T1"]}
    return RuleSet(roster(**person), [])


def test_shards_subscribe_their_phones_osmand_topic() -> None:
    rules = _rules()
    assert topics.osmand("+") in topics.UPLINK
    owner = [s for s in (Shard(k, 4) for k in range(4)) if s.owns("S1")]
    assert topics.osmand("P1") in owner[0].topics(rules)
    others = [Shard(k, 4) for k in range(4) if Shard(k, 4) not in owner]
    assert all(topics.osmand("P1") not in s.topics(rules) for s in others)
    assert all(s.foreign(topics.osmand("P1"), rules) for s in others)
    assert not owner[0].foreign(topics.osmand("P1"), rules)


def test_replay_takes_osmand_pings_as_recorded(tmp_path: Path) -> None:
    """A Traccar Client phone walking out of 莲都区, recorded as spec 4.2 says: GETs as the
    query string, POSTs as the JSON body. The replay raises its jurisdiction_exit."""
    target = qingtian_point()
    border = border_crossing(LIANDU_SEAT, target, LIANDU)
    path = line(LIANDU_SEAT, border, 10, interval_s=60)
    path += line(border, target, 60, t0=path[-1]["ts"] + 60_000, interval_s=60)[:10]
    pings = []
    for k, f in enumerate(path):
        if k % 2:
            payload: Any = f"id=123456&timestamp={f['ts'] // 1000}&lat={f['lat']}&lon={f['lon']}"
            payload += "&accuracy=8&speed=2.5&batt=80"
        else:
            payload = {
                "device_id": "123456",
                "location": {
                    "timestamp": iso(f["ts"]),
                    "coords": {"latitude": f["lat"], "longitude": f["lon"], "accuracy": 8},
                },
            }
        pings.append({"at": f["ts"] + 1500, "topic": "osmand", "payload": payload})
    (tmp_path / "zones.geojson").write_text(json.dumps(lishui_collection()))
    person = {
        "id": "S1",
        "jurisdiction": [LIANDU],
        "devices": [{"id": "P1", "kind": "phone", "osmand": "123456"}],
    }
    (tmp_path / "roster.json").write_text(json.dumps({"supervisees": [person]}))
    (tmp_path / "pings.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pings))
    out, err = io.StringIO(), io.StringIO()
    replay(tmp_path, out, err)
    assert "rejected" not in err.getvalue()
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(a["type"], a["device"], a["late"]) for a in alerts] == [
        ("jurisdiction_exit", "P1", False)
    ]
