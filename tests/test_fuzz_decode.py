"""Property-based fuzzing of the device message decoders (ingest.decode) with hypothesis.

Whatever arrives — arbitrary bytes, JSON-ish structures of any shape, near-valid fixes
with hostile values, valid messages with bytes flipped — `decode` returns a `Decoded`,
never raises, names one of its fixed reasons for each rejection, and every fix it lets
through has finite, in-range coordinates; the engine then judges those fixes without
failing. Sized for CI (a few seconds); set FENCEWATCH_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence.engine import Engine
from geofence.model import Roster
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from ingest.decode import MAX_FUTURE_MS, Decoded, decode
from tests.kit import LIANDU, lishui_collection

AT = 1_764_240_000_123
DEVICES = {"T1": "S1", "T2": "S2", "P1": "S1"}
OWNTRACKS = {"alice/phone": "P1"}
REASONS = {
    "topic",
    "too_large",
    "malformed",
    "schema",
    "version",
    "unknown_device",
    "ts_future",
    "ts_too_old",
    "out_of_range",
    "crs",
}
EXAMPLES = int(os.environ.get("FENCEWATCH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no timing assertions; CI machines vary
    database=None,  # no .hypothesis directory in the work tree
    derandomize=bool(os.environ.get("CI")),  # CI repeats one run; elsewhere it explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TOPICS = st.one_of(
    st.sampled_from(
        [
            "em/T1/loc",
            "em/T1/evt",
            "em/T2/loc",
            "owntracks/alice/phone",
            "em/NOBODY/loc",
            "owntracks/eve/phone",
        ]
    ),
    st.text(max_size=40),
)
FIELDS = [
    "v",
    "seq",
    "ts",
    "lat",
    "lon",
    "acc",
    "src",
    "spd",
    "hdg",
    "batt",
    "chg",
    "strap",
    "fix",
    "crs",
    "dev",
    "batch",
    "type",
    "_type",
    "tst",
    "vel",
    "cog",
    "bs",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond int64 too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), inner, max_size=6),
    ),
    max_leaves=25,
)
TIMES = st.one_of(
    st.integers(AT - 40 * 86_400_000, AT + 2 * MAX_FUTURE_MS),
    st.integers(),
)
COORDS = st.one_of(
    st.floats(-200, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1000, 1000),
    SCALARS,
)
FIX_FIELDS = st.fixed_dictionaries(
    {"v": st.one_of(st.just(1), SCALARS), "seq": st.one_of(st.integers(0, 10**6), SCALARS)},
    optional={
        "ts": TIMES,
        "lat": COORDS,
        "lon": COORDS,
        "acc": COORDS,
        "spd": COORDS,
        "hdg": COORDS,
        "batt": st.one_of(st.integers(-5, 120), SCALARS),
        "chg": SCALARS,
        "strap": st.one_of(st.sampled_from(["ok", "open", "cut", "loose"]), SCALARS),
        "src": st.one_of(st.sampled_from(["gps", "bds", "wifi", "cell"]), SCALARS),
        "fix": SCALARS,
        "crs": st.one_of(st.sampled_from(["wgs84", "gcj02", "GCJ-02", "bd09"]), SCALARS),
        "dev": st.one_of(st.sampled_from(["T1", "T2"]), SCALARS),
        "type": st.one_of(st.sampled_from(["boot", "strap_cut", "sos", "nope"]), SCALARS),
        "extra": JSONISH,
    },
)
OWNTRACKS_FIELDS = st.fixed_dictionaries(
    {"_type": st.one_of(st.sampled_from(["location", "waypoint", "transition"]), SCALARS)},
    optional={
        "lat": COORDS,
        "lon": COORDS,
        "tst": st.one_of(st.integers(AT // 1000 - 86_400 * 40, AT // 1000 + 3600), SCALARS),
        "acc": COORDS,
        "vel": COORDS,
        "cog": COORDS,
        "batt": SCALARS,
        "bs": st.one_of(st.integers(0, 4), SCALARS),
    },
)


def _json(value: Any) -> bytes:
    # json, not msgspec: it writes NaN and Infinity as devices with a sloppy encoder do.
    return json.dumps(value, allow_nan=True).encode()


@cache
def _engine() -> Engine:
    from fencewatch.scenario import parse_supervisee

    people = [
        parse_supervisee({"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]}),
        parse_supervisee({"id": "S2", "jurisdiction": [LIANDU], "devices": ["T2"]}),
    ]
    roster = Roster(timezone="Asia/Shanghai", supervisees=people)
    return Engine(RuleSet(roster, parse_feature_collection(lishui_collection())))


def _decode(topic: str, payload: bytes) -> Decoded:
    return decode(topic, payload, AT, DEVICES, OWNTRACKS)


def _storable(fix_or_event: Any) -> bool:
    """What the database can hold: bigint sequence numbers, text without NUL."""
    texts = [getattr(fix_or_event, name, None) for name in ("src", "strap", "type")]
    return 0 <= fix_or_event.seq < 2**63 and not any(t and "\x00" in t for t in texts)


def check(out: Decoded) -> None:
    assert isinstance(out, Decoded)
    for r in out.rejections:
        assert r.reason in REASONS, r
        assert r.detail
    for f in out.fixes:
        assert (f.lat is None) == (f.lon is None)
        if f.lat is not None and f.lon is not None:
            assert math.isfinite(f.lat) and -90.0 <= f.lat <= 90.0, f
            assert math.isfinite(f.lon) and -180.0 <= f.lon <= 180.0, f
        for value in (f.acc, f.spd, f.hdg):
            assert value is None or (math.isfinite(value) and value >= 0), f
        assert f.batt is None or 0 <= f.batt <= 100
        assert f.ts - AT <= MAX_FUTURE_MS
        assert _storable(f), f
    for e in out.events:
        assert e.ts - AT <= MAX_FUTURE_MS
        assert _storable(e), e
    # What decode accepts, the engine judges without failing.
    engine = _engine()
    for f in out.fixes:
        assert f.device in engine.rules.device_owner
    engine.process(out.fixes, out.events)


@FUZZ
@given(topic=TOPICS, payload=st.binary(max_size=4096))
def test_arbitrary_bytes(topic: str, payload: bytes) -> None:
    check(_decode(topic, payload))


@FUZZ
@given(topic=TOPICS, value=JSONISH)
def test_arbitrary_json(topic: str, value: Any) -> None:
    check(_decode(topic, _json(value)))


@FUZZ
@given(
    topic=st.sampled_from(["em/T1/loc", "em/T1/evt", "em/T2/loc"]),
    message=FIX_FIELDS,
    batch=st.one_of(st.none(), st.lists(FIX_FIELDS, max_size=3)),
)
def test_near_valid_device_messages(
    topic: str, message: dict[str, Any], batch: list[dict[str, Any]] | None
) -> None:
    if batch is not None:
        message = {"v": message["v"], "batch": batch}
    check(_decode(topic, _json(message)))


@FUZZ
@given(message=OWNTRACKS_FIELDS)
def test_near_valid_owntracks(message: dict[str, Any]) -> None:
    check(_decode("owntracks/alice/phone", _json(message)))


@FUZZ
@given(message=FIX_FIELDS, data=st.data())
def test_valid_messages_with_bytes_flipped(message: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(_json(message))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    check(_decode("em/T1/loc", bytes(raw)))


@pytest.mark.parametrize("depth", [10, 100, 400])
def test_nesting_below_the_recursion_limit_is_handled(depth: int) -> None:
    payload = b'{"v":1,"seq":1,"ts":%d,"lat":28.4,"lon":119.9,"x":%s%s}' % (
        AT,
        b"[" * depth,
        b"]" * depth,
    )
    check(decode("em/T1/loc", payload, AT, DEVICES, OWNTRACKS))
