"""JT/T 808 frames (ingest.jt808.frame): every packet of Traccar's decoder tests
(tests/corpus/jt808/) framed as it must be, broken frames refused with their reason, and
properties: what `encode` builds `decode` reads back whatever bytes the body holds, and the
stream reader finds every frame in any chunking of a TCP stream and never raises."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fencewatch.metrics import JT808_DROPPED
from ingest.jt808.frame import (
    MAX_BODY,
    REASONS,
    Frame,
    FrameError,
    FrameReader,
    Reassembler,
    checksum,
    decode,
    encode,
    escape,
    unescape,
)

CORPUS = Path(__file__).resolve().parent / "corpus" / "jt808"


@cache
def corpus() -> list[dict[str, Any]]:
    out = []
    for path in sorted(CORPUS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["source"]["licence"] and doc["source"]["repository"] and doc["source"]["path"]
        out += [{**packet, "escaped": doc.get("escaped", False)} for packet in doc["packets"]]
    return out


def wire(packet: dict[str, Any]) -> bytes:
    """A corpus packet as it travels: Traccar's tests hold packets unescaped."""
    raw = bytes.fromhex(packet["hex"])
    return raw if packet["escaped"] else b"\x7e" + escape(raw[1:-1]) + b"\x7e"


def refused(data: bytes) -> str:
    with pytest.raises(FrameError) as caught:
        decode(data)
    assert caught.value.reason in REASONS and caught.value.detail
    return caught.value.reason


def test_corpus_packets_frame_as_expected() -> None:
    packets = corpus()
    assert len(packets) > 110
    for packet in packets:
        expect = packet["expect"]["frame"]
        if expect == "ok":
            frame = decode(wire(packet))
            assert f"{frame.msg_id:04x}" == packet["expect"]["msg_id"], packet["case"]
        else:
            assert refused(wire(packet)) == expect, packet["case"]


def test_corpus_as_one_tcp_stream() -> None:
    """All packets back to back, read in 7-byte chunks: the same frames and refusals."""
    stream = b"".join(wire(p) for p in corpus())
    reader = FrameReader()
    out: list[Frame | FrameError] = []
    for i in range(0, len(stream), 7):
        out += reader.feed(stream[i : i + 7])
    got = ["ok" if isinstance(o, Frame) else o.reason for o in out]
    assert got == [p["expect"]["frame"] for p in corpus()]
    assert reader.buffered == 0


def test_header_2013() -> None:
    heartbeat = next(p for p in corpus() if p["hex"].startswith("7e0002000004304832546500b7"))
    frame = decode(wire(heartbeat))
    assert frame == Frame(msg_id=0x0002, phone="043048325465", serial=0xB7, body=b"")
    assert frame.version is None and not frame.split


def test_header_2019() -> None:
    registration = next(p for p in corpus() if p["hex"].startswith("7e0100405c"))
    frame = decode(wire(registration))
    assert frame.msg_id == 0x0100
    assert frame.version == 1
    assert frame.phone == "00000866496077582164"
    assert frame.serial == 0x5218
    assert len(frame.body) == 0x5C


def case(name: str) -> dict[str, Any]:
    return next(p for p in corpus() if p["case"] == name)


def test_escaped_checksum() -> None:
    # SmallChi's heartbeat whose checksum byte is 0x7e, sent as 7d 02.
    data = wire(case("0x0002_escaped_checksum"))
    assert data.endswith(b"\x7d\x02\x7e")
    assert decode(data) == Frame(msg_id=0x0002, phone="040021679287", serial=43, body=b"")


def test_real_split_message_reassembled() -> None:
    """SmallChi's two-packet 0x1205 (a terminal's list of recordings): 930 + 56 bytes, one
    message of 35 entries of 28 bytes after a 6-byte head."""
    first, second = (decode(wire(case(f"0x1205_split_{i}_of_2"))) for i in (1, 2))
    assert (first.packet_total, first.packet_index, second.packet_index) == (2, 1, 2)
    joiner = Reassembler()
    assert joiner.add(second) is None
    whole = joiner.add(first)
    assert whole is not None and not whole.split
    assert (whole.msg_id, whole.phone, whole.serial) == (0x1205, "040666575062", first.serial)
    assert len(whole.body) == 6 + 35 * 28 and whole.body[2:6] == (35).to_bytes(4)


def test_escaping_matches_traccar() -> None:
    # Traccar's Jt808FrameDecoderTest / Jt808FrameEncoderTest (Apache-2.0): the same bytes
    # escaped and unescaped.
    assert escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")
    assert unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")


def _reframe(raw: bytes) -> bytes:
    """Header + body with a correct checksum, escaped and flagged."""
    return b"\x7e" + escape(raw + bytes([checksum(raw)])) + b"\x7e"


def test_malformed_frames_refused_with_reason() -> None:
    good = encode(0x0200, "13912345678", 5, bytes(range(40)))
    raw = unescape(good[1:-1])[:-1]  # header + body, no checksum
    flipped = bytearray(good)
    flipped[20] ^= 0x01
    assert refused(bytes(flipped)) == "bad_checksum"
    assert refused(good[:30] + b"\x7e") == "truncated"
    assert refused(b"\x7e\x00\x02\x7e") == "truncated"
    assert refused(_reframe(raw + b"\x00")) == "bad_length"
    assert refused(good[:10] + b"\x7d\x03" + good[10:]) == "bad_escape"
    assert refused(good[:-1] + b"\x7d\x7e") == "bad_escape"
    assert refused(b"\x7e" + bytes(3000) + b"\x7e") == "oversized"
    # Bit 10 of the attributes: the body is RSA-encrypted; nothing here has the key.
    rsa = bytearray(raw)
    rsa[2] |= 0x04
    assert refused(_reframe(bytes(rsa))) == "encrypted"
    with pytest.raises(FrameError, match="RSA"):
        decode(_reframe(bytes(rsa)))
    assert refused(encode(0x0704, "1", 1, b"x", packet=(2, 3))) == "bad_packet"
    assert refused(encode(0x0704, "1", 1, b"x", packet=(2, 0))) == "bad_packet"


def test_reader_skips_garbage_and_oversized_runs() -> None:
    frame = encode(0x0002, "13912345678", 1)
    reader = FrameReader(max_frame=100)
    out = reader.feed(b"GET / HTTP/1.1\r\n\r\n" + frame)
    assert [type(o) for o in out] == [FrameError, Frame]
    assert isinstance(out[0], FrameError) and out[0].reason == "garbage"
    # A slow loris: bytes that never close a frame cost at most max_frame, reported once.
    out = reader.feed(b"\x7e" + b"\x01" * 60)
    out += reader.feed(b"\x01" * 60)
    out += reader.feed(b"\x01" * 600)
    assert [o.reason for o in out if isinstance(o, FrameError)] == ["oversized"]
    assert reader.buffered <= 100
    assert reader.feed(frame) == [decode(frame)]


def test_reassembler_joins_packets_in_any_order() -> None:
    body = bytes(range(256)) * 9
    parts = [body[i : i + MAX_BODY] for i in range(0, len(body), MAX_BODY)]
    frames = [
        decode(encode(0x0704, "13912345678", 40 + i, part, packet=(len(parts), i + 1)))
        for i, part in enumerate(parts)
    ]
    joiner = Reassembler()
    assert joiner.add(frames[2]) is None
    assert joiner.add(frames[0]) is None
    assert joiner.add(frames[0]) is None  # a resent packet
    whole = joiner.add(frames[1])
    assert whole == Frame(msg_id=0x0704, phone="013912345678", serial=40, body=body)
    unsplit = decode(encode(0x0200, "1", 1, b"abc"))
    assert joiner.add(unsplit) is unsplit


def test_reassembler_is_bounded() -> None:
    joiner = Reassembler(max_messages=3, max_packets=8)
    for serial in range(0, 100, 2):
        assert joiner.add(decode(encode(0x0704, "1", serial, b"a", packet=(2, 1)))) is None
    assert joiner.dropped == 47
    with pytest.raises(FrameError) as caught:
        joiner.add(decode(encode(0x0704, "1", 1, b"a", packet=(9, 1))))
    assert caught.value.reason == "bad_packet"


phones = st.text("0123456789", min_size=1, max_size=12)
bodies = st.binary(max_size=MAX_BODY) | st.lists(
    st.sampled_from([0x7E, 0x7D, 0x01, 0x02]), max_size=50
).map(bytes)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    version = draw(st.none() | st.integers(0, 255))
    phone = draw(phones if version is None else st.text("0123456789", min_size=1, max_size=20))
    total = draw(st.integers(0, 5))
    index = draw(st.integers(1, total)) if total else 0
    return Frame(
        msg_id=draw(st.integers(0, 0xFFFF)),
        phone=phone.rjust(12 if version is None else 20, "0"),
        serial=draw(st.integers(0, 0xFFFF)),
        body=draw(bodies),
        version=version,
        packet_total=total,
        packet_index=index,
    )


def _encode(f: Frame) -> bytes:
    packet = (f.packet_total, f.packet_index) if f.packet_total else None
    return encode(f.msg_id, f.phone, f.serial, f.body, f.version, packet)


@settings(max_examples=300, deadline=None)
@given(frames())
def test_encode_decode_round_trip(frame: Frame) -> None:
    data = _encode(frame)
    assert data.count(0x7E) == 2  # flags only: every 7e inside is escaped
    assert decode(data) == frame


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 64))
def test_reader_never_raises(data: bytes, chunk: int) -> None:
    reader = FrameReader(max_frame=512)
    for i in range(0, len(data), chunk):
        for item in reader.feed(data[i : i + chunk]):
            assert isinstance(item, Frame) or item.reason in REASONS
        assert reader.buffered <= 512


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(frames(), st.binary(max_size=20)), min_size=1, max_size=6),
    st.binary(max_size=20),
    st.lists(st.integers(1, 200), min_size=1, max_size=10),
)
def test_reader_finds_every_frame_in_any_chunking(
    items: list[tuple[Frame, bytes]], lead: bytes, cuts: list[int]
) -> None:
    """Frames with garbage before and between them, cut anywhere: every frame comes out,
    in order (garbage may at most add refusals)."""
    stream = lead + b"".join(_encode(f) + junk for f, junk in items)
    reader = FrameReader()
    found: list[Frame] = []
    at, turn = 0, 0
    while at < len(stream):
        size = cuts[turn % len(cuts)]
        found += [o for o in reader.feed(stream[at : at + size]) if isinstance(o, Frame)]
        at, turn = at + size, turn + 1
    expected = iter(found)
    assert all(any(f == g for g in expected) for f, _ in items)


def test_the_dropped_metrics_help_names_reasons_the_gateway_gives() -> None:
    # Whoever reads /metrics looks these up in docs/security.md's hostile-input table.
    table = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", table))
    listed = JT808_DROPPED._documentation.split("by reason (")[1].split("…")[0]
    named = {reason.strip() for reason in listed.split(",") if reason.strip()}
    assert named and named <= documented, f"not reasons: {sorted(named - documented)}"
