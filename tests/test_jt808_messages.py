"""JT/T 808 messages (ingest.jt808.messages, .commands) and their spec 4.1 form
(ingest.jt808.uplink): every terminal packet of the corpus decodes, the hand-checked ones
to the right position, time, speed and alarm events, and what the gateway would publish
passes fencewatch's own decoder (ingest.decode) as the fixes and events a user sees."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.crs import gcj02_to_wgs84
from ingest.decode import MAX_BATCH, Decoded, decode
from ingest.jt808 import commands, messages, uplink
from ingest.jt808.frame import Frame, encode
from ingest.jt808.frame import decode as decode_frame
from ingest.messages import Invalid
from tests.test_jt808_frame import corpus, wire

READ = {
    messages.LOCATION,
    messages.BATCH,
    messages.REGISTRATION,
    messages.AUTHENTICATION,
    messages.HEARTBEAT,
    messages.TERMINAL_RESPONSE,
    messages.LOCATION_REPLY,
}
DEVICE = "JT1"


def published(up: uplink.Uplink, at: int) -> Decoded:
    """What ingest makes of the gateway's messages for terminal DEVICE."""
    out = Decoded()
    for payload in up.loc:
        got = decode(f"em/{DEVICE}/loc", payload, at, {DEVICE: "S1"}, {})
        out.fixes += got.fixes
        out.rejections += got.rejections
    for payload in up.events:
        got = decode(f"em/{DEVICE}/evt", payload, at, {DEVICE: "S1"}, {})
        out.events += got.events
        out.rejections += got.rejections
    assert not out.rejections, out.rejections
    return out


def locations(message: messages.Message) -> list[messages.Location]:
    if isinstance(message, messages.Batch):
        return message.locations
    assert isinstance(message, messages.Location)
    return [message]


def test_every_corpus_packet_decodes() -> None:
    kinds: set[str] = set()
    for packet in corpus():
        if packet["expect"]["frame"] != "ok":
            continue
        frame = decode_frame(wire(packet))
        if frame.msg_id not in READ:
            with pytest.raises(Invalid, match="not one the platform reads"):
                messages.read(frame)
            continue
        message = messages.read(frame)
        kinds.add(type(message).__name__)
        if isinstance(message, messages.Location | messages.Batch):
            for location in locations(message):
                assert -90 <= location.lat <= 90 and -180 <= location.lon <= 180
            up = uplink.uplink(locations(message), at=1_800_000_000_000)
            assert up.loc
    assert kinds == {t.__name__ for t in messages.Message.__args__}  # every kind, real and built


@pytest.mark.parametrize(
    "packet", [p for p in corpus() if "fixes" in p["expect"]], ids=lambda p: p["case"]
)
def test_hand_checked_packets(packet: dict[str, Any]) -> None:
    expect = packet["expect"]
    frame = decode_frame(wire(packet))
    assert (frame.phone, frame.serial, frame.version) == (
        expect["phone"],
        expect["serial"],
        expect["version"],
    )
    found = locations(messages.read(frame))
    fields = msgspec.structs.asdict(found[0])
    assert {k: fields[k] for k in expect["location"]} == expect["location"]

    at = expect["location"]["ts"] + 90_000  # arrived a minute and a half later
    up = uplink.uplink(found, at)
    entries = [json.loads(p) for p in up.loc]
    single = entries[0] if len(found) == 1 else entries[0]["batch"][0]
    assert {k: v for k, v in single.items() if k != "v"} == expect["fixes"][0]
    assert [json.loads(e)["type"] for e in up.events] == expect["events"]

    out = published(up, at)
    fix = out.fixes[0]
    want = expect["fixes"][0]
    assert (fix.device, fix.ts, fix.lat, fix.lon) == (DEVICE, want["ts"], want["lat"], want["lon"])
    assert fix.acc == want.get("acc") and fix.src == want.get("src")
    assert [e.type for e in out.events] == expect["events"]


def test_smallchi_packets_decode_to_what_its_tests_assert() -> None:
    checked = 0
    for packet in corpus():
        expect = packet["expect"]
        if not packet["escaped"] or "build" in expect or expect["frame"] != "ok":
            continue
        frame = decode_frame(wire(packet))
        for field in ("phone", "serial", "version"):
            if field in expect:
                assert getattr(frame, field) == expect[field], packet["case"]
        if frame.msg_id not in READ:
            continue
        message = messages.read(frame)
        wanted = expect.get("locations") or ([expect["location"]] if "location" in expect else [])
        if isinstance(message, messages.Batch):
            assert message.kind == expect.get("batch_kind", message.kind)
        for want, got in zip(wanted, locations(message) if wanted else [], strict=True):
            fields = msgspec.structs.asdict(got)
            assert {k: fields[k] for k in want} == want, packet["case"]
            checked += 1
        if "registration" in expect:
            assert msgspec.structs.asdict(message) == expect["registration"], packet["case"]
            checked += 1
        if "response" in expect:
            assert message == messages.TerminalResponse(**expect["response"])
            checked += 1
        if "reply_serial" in expect:
            assert isinstance(message, messages.LocationReply)
            assert message.serial == expect["reply_serial"]
            checked += 1
    assert checked == 7  # 3 locations, 2 registrations, a response, a location reply


def test_platform_messages_built_as_smallchi_builds_them() -> None:
    built = 0
    for packet in corpus():
        expect = packet["expect"]
        if "build" not in expect:
            continue
        args = expect["args"]
        if expect["build"] == "parameters_body":
            args = [{int(k): v for k, v in args[0].items()}]
        body = getattr(commands, expect["build"])(*args)
        msg_id = int(expect["msg_id"], 16)
        data = encode(msg_id, expect["phone"], expect["serial"], body, expect.get("version"))
        assert data.hex() == packet["hex"], packet["case"]
        built += 1
    assert built == 6


def _registration(hex_prefix: str) -> messages.Registration:
    packet = next(p for p in corpus() if p["hex"].lower().startswith(hex_prefix))
    reg = messages.read(decode_frame(wire(packet)))
    assert isinstance(reg, messages.Registration)
    return reg


def test_registrations_2011_2013_2019() -> None:
    assert _registration("7e0100002d0141305678720024") == messages.Registration(
        province=44,
        city=303,
        maker="70111",
        model="BSJ-A6-BD",
        terminal_id="0567872",
        plate_color=1,
        plate="粤B88888",
    )
    assert _registration("7e0100002d013511221122").plate == "苏BA6860"
    # 2011: an 8-byte model field.
    old = _registration("7e01000021013345678906")
    assert (old.model, old.terminal_id, old.plate) == ("BSJ-M7B", "0000000", "粤B88888")
    new = _registration("7e0100405c")
    assert (new.model, new.terminal_id, new.plate_color) == ("MD300", "866496077582164", 4)


def test_authentication_2013_and_2019() -> None:
    packet = next(p for p in corpus() if p["hex"].startswith("7E0102000E"))
    assert messages.read(decode_frame(wire(packet))) == messages.Authentication("authentication")
    body = messages.authentication_body(
        "A1B2", version=1, imei="866496077582164", software="FW 1.0"
    )
    frame = decode_frame(encode(messages.AUTHENTICATION, "13912345678", 3, body, version=1))
    assert messages.read(frame) == messages.Authentication("A1B2", "866496077582164", "FW 1.0")


def test_built_terminal_messages_read_back() -> None:
    ts = 1_764_240_000_000
    body = messages.location_body(
        -33.5,
        -70.25,
        ts,
        alarm=1,
        speed_kmh=36.5,
        course=359,
        altitude=-12,
        mileage_km=1234.5,
        signal=25,
        satellites=9,
    )
    location = messages.read_location(body)
    assert (location.lat, location.lon, location.ts, location.speed_kmh) == (
        -33.5,
        -70.25,
        ts,
        36.5,
    )
    assert (location.altitude, location.course, location.mileage_km) == (-12, 359, 1234.5)
    assert (location.signal, location.satellites, location.fix_valid) == (25, 9, True)
    batch = messages.read_batch(messages.batch_body([body, body]))
    assert batch == messages.Batch(kind=messages.BATCH_BLIND_AREA, locations=[location] * 2)
    reply = Frame(messages.LOCATION_REPLY, "1", 1, messages.location_reply_body(77, body))
    assert messages.read(reply) == messages.LocationReply(77, location)
    answer = Frame(messages.TERMINAL_RESPONSE, "1", 2, messages.terminal_response_body(9, 0x8300))
    assert messages.read(answer) == messages.TerminalResponse(9, 0x8300, 0)
    for version in (None, 1):
        reg = messages.registration_body("T123", plate="浙K12345", version=version)
        frame = Frame(messages.REGISTRATION, "1", 3, reg, version=version)
        got = messages.read(frame)
        assert isinstance(got, messages.Registration)
        assert (got.terminal_id, got.plate) == ("T123", "浙K12345")


def test_platform_messages() -> None:
    # Traccar's Jt808ProtocolEncoderTest (Apache-2.0): 0x8300 "Test, Command, 123#".
    body = commands.text_message_body("Test, Command, 123#", flags=commands.TEXT_EMERGENCY)
    expected = "7e830000140b3a73ce2ff2000001546573742c20436f6d6d616e642c2031323323a57e"
    assert encode(commands.TEXT_MESSAGE, "0b3a73ce2ff2", 0, body).hex() == expected
    text = commands.read_text_message(commands.text_message_body("请于今晚十点前回家"))
    assert text == commands.TextMessage(commands.TEXT_DISPLAY, "请于今晚十点前回家")
    text = commands.read_text_message(commands.text_message_body("回家", version=1), version=1)
    assert text.text == "回家"
    assert commands.read_general_response(
        commands.general_response_body(7, messages.LOCATION)
    ) == commands.GeneralResponse(7, messages.LOCATION, commands.OK)
    assert commands.read_registration_response(
        commands.registration_response_body(8, commands.REGISTERED, "AUTH8")
    ) == commands.RegistrationResponse(8, commands.REGISTERED, "AUTH8")
    refused = commands.registration_response_body(8, commands.NO_SUCH_TERMINAL, "AUTH8")
    assert commands.read_registration_response(refused).auth_code == ""
    params = commands.read_parameters(commands.parameters_body(commands.report_interval_params(15)))
    assert params == {
        commands.DEFAULT_REPORT_INTERVAL: (15).to_bytes(4),
        commands.SLEEP_REPORT_INTERVAL: (15).to_bytes(4),
    }


def test_short_and_unknown_bodies_refused_with_reason() -> None:
    for msg_id in READ - {messages.HEARTBEAT, messages.AUTHENTICATION}:
        with pytest.raises(Invalid) as caught:
            messages.read(Frame(msg_id, "1", 1, b"\x00\x01"))
        assert caught.value.reason == "short_body"
    batch = messages.batch_body([messages.location_body(30, 120, 1_764_240_000_000)])
    with pytest.raises(Invalid, match="entry 1 of 1"):
        messages.read_batch(batch[:-3])
    with pytest.raises(Invalid) as caught:
        messages.read(Frame(0x0900, "1", 1, b"anything"))
    assert caught.value.reason == "unsupported"
    with pytest.raises(Invalid):
        commands.read_parameters(b"\x02\x00\x00\x00\x29\x04\x00")


def test_invalid_fix_and_missing_time_are_not_positions() -> None:
    at = 1_764_240_000_000
    no_fix = messages.read_location(messages.location_body(28.45, 119.91, at - 5000, fix=False))
    entry = uplink.fix_entry(no_fix, at)
    assert entry == {"seq": (at - 5000) // 1000, "ts": at - 5000, "fix": False}
    body = bytearray(messages.location_body(28.45, 119.91, at))
    body[22:28] = bytes(6)  # a terminal before its first fix: time all zeros
    untimed = messages.read_location(bytes(body))
    assert untimed.ts is None
    assert uplink.fix_entry(untimed, at) == {"seq": at // 1000, "ts": at, "fix": False}
    island = messages.read_location(messages.location_body(0, 0, at))
    assert uplink.fix_entry(island, at)["fix"] is False
    out = published(uplink.uplink([no_fix], at), at)
    assert [(f.lat, f.lon) for f in out.fixes] == [(None, None)]


def test_gcj02_terminal_converted_by_ingest() -> None:
    at = 1_764_240_000_000
    location = messages.read_location(messages.location_body(28.4517, 119.9127, at, satellites=7))
    out = published(uplink.uplink([location], at, crs="gcj02"), at)
    fix = out.fixes[0]
    assert fix.gcj02 and fix.acc == 7.5
    # GCJ-02 is offset from WGS-84 by a few hundred metres here: the fix is where the
    # published conversion puts it, not where the terminal's numbers say.
    lat, lon = gcj02_to_wgs84(28.4517, 119.9127)
    assert (fix.lat, fix.lon) == pytest.approx((float(lat), float(lon)), abs=1e-9)
    assert abs(fix.lat - 28.4517) + abs(fix.lon - 119.9127) > 0.003
    with pytest.raises(ValueError):
        uplink.uplink([location], at, crs="bd09")


def test_alarm_bits_raise_events_once() -> None:
    at = 1_764_240_000_000

    def report(seconds: int, alarm: int) -> messages.Location:
        return messages.read_location(
            messages.location_body(28.4, 119.9, at + seconds * 1000, alarm=alarm)
        )

    sos, power_cut = uplink.ALARM_EMERGENCY, uplink.ALARM_POWER_CUT
    first = uplink.uplink([report(0, sos)], at + 60_000)
    assert [json.loads(e)["type"] for e in first.events] == ["sos"]
    # The terminal keeps the bit set until the condition ends: no second SOS alert.
    again = uplink.uplink(
        [report(10, sos), report(20, sos | power_cut)], at, previous_alarm=first.alarm
    )
    assert [json.loads(e)["type"] for e in again.events] == ["power_off"]
    released = uplink.uplink([report(30, 0), report(40, sos)], at, previous_alarm=again.alarm)
    assert [json.loads(e)["type"] for e in released.events] == ["sos"]
    assert uplink.alarm_events(0x180, None) == ["low_battery", "power_off"]
    assert uplink.alarm_events(1 << 16, None) == ["strap_open"]
    assert uplink.alarm_events(1 << 1, None) == []  # overspeed: nothing a supervisor needs


def test_resent_fix_keeps_its_seq() -> None:
    """A fix sent in a 0x0200, unacknowledged, then resent in a 0x0704 after a reconnect:
    the same seq, so ingest stores it once."""
    at = 1_764_240_000_000
    body = messages.location_body(28.4517, 119.9127, at - 30_000, satellites=12)
    live = uplink.uplink([messages.read_location(body)], at)
    later = messages.read_batch(messages.batch_body([body, body]))
    resent = uplink.uplink(later.locations, at + 600_000)
    seqs = {f.seq for f in published(live, at).fixes} | {
        f.seq for f in published(resent, at + 600_000).fixes
    }
    assert len(seqs) == 1


def test_long_batch_split_for_ingest() -> None:
    at = 1_764_240_000_000
    many = [
        messages.read_location(messages.location_body(28.4, 119.9, at - i * 1000))
        for i in range(MAX_BATCH + 5)
    ]
    up = uplink.uplink(many, at)
    assert len(up.loc) == 2
    assert len(published(up, at).fixes) == MAX_BATCH + 5


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(READ)), st.binary(max_size=300), st.none() | st.just(1))
def test_any_body_decodes_or_is_refused(msg_id: int, body: bytes, version: int | None) -> None:
    try:
        message = messages.read(Frame(msg_id, "1", 1, body, version=version))
    except Invalid as bad:
        assert bad.reason == "short_body"
        return
    if isinstance(message, messages.Location | messages.Batch):
        uplink.uplink(locations(message), 1_764_240_000_000)
