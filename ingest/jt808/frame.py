"""JT/T 808 frames: what travels between two 0x7E flags on a terminal's TCP connection.

On the wire a frame is `7E | header | body | checksum | 7E`, where inside the flags 0x7E is
sent as 7D 02 and 0x7D as 7D 01, and the checksum is the XOR of every header and body
byte. The header is

    msg_id u16 | attributes u16 | [version u8] | phone BCD[6 or 10] | serial u16
    | [packet total u16 | packet index u16]

with the attributes' low 10 bits the body length, bits 10-12 the encryption (bit 10: RSA),
bit 13 "split packet" (total and index follow the serial) and, in the 2019 edition, bit 14
"versioned header" (a protocol version byte and a 10-byte phone; 2011 and 2013 have a
6-byte one). The phone number is the terminal's identity: `Frame.phone` is its digits as
sent, zero padding included ("013912345678"); a terminal that puts hex digits there (some
do) gets them lowercase, as Traccar reads it.

Public interface:
- `Frame`: one decoded frame (`msg_id`, `phone`, `serial`, `body`, `version` None for the
  2011/2013 layout or the 2019 protocol version, `packet_total`/`packet_index` 0 when not
  split).
- `FrameError(reason, detail)`: why bytes are not a frame; `reason` is one of `REASONS`,
  a metrics label.
- `decode(data)`: one complete frame (flags optional) → Frame, or FrameError.
- `encode(msg_id, phone, serial, body, version=None, packet=None)`: a complete escaped
  frame, flags included; `to(frame, msg_id, serial, body)` one for the terminal that sent
  `frame`, in its header layout.
- `FrameReader`: TCP bytes in any chunking → frames and FrameErrors, never raising;
  bounded buffer, resynchronises at the next flag after garbage.
- `Reassembler`: split packets → the whole message as one Frame (bounded).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import reduce
from operator import xor

import msgspec

FLAG = 0x7E
ESCAPE = 0x7D
MAX_BODY = 0x3FF  # the attributes' 10-bit length field cannot say more
HEADER_2013 = 12
HEADER_2019 = 17
SPLIT_FIELDS = 4
# The largest frame the header can describe, unescaped, without flags: header, split
# fields, body, checksum. Escaping can at most double it on the wire.
MAX_FRAME = HEADER_2019 + SPLIT_FIELDS + MAX_BODY + 1
LENGTH_MASK = 0x03FF
ENCRYPTION_SHIFT = 10
ENCRYPTION_MASK = 0x7
RSA = 0x1
SPLIT_BIT = 0x2000
VERSION_BIT = 0x4000

REASONS = frozenset(
    {
        "garbage",  # bytes outside any frame (before a flag)
        "truncated",  # shorter than its header says
        "bad_length",  # longer than its header says
        "bad_checksum",
        "bad_escape",  # 7D followed by something other than 01 or 02
        "oversized",  # more bytes than any frame can have before the closing flag
        "encrypted",  # an RSA (or reserved) encrypted body: no key to read it
        "bad_packet",  # split-packet total/index that cannot be
    }
)


class FrameError(Exception):
    """Bytes that are not a JT/T 808 frame: `reason` from REASONS, `detail` for a person."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Frame(msgspec.Struct, frozen=True):
    msg_id: int
    phone: str
    serial: int
    body: bytes
    version: int | None = None  # None: the 2011/2013 header; else the 2019 version byte
    packet_total: int = 0  # 0: not split
    packet_index: int = 0  # 1-based

    @property
    def split(self) -> bool:
        return self.packet_total > 0


def checksum(data: bytes) -> int:
    return reduce(xor, data, 0)


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    if ESCAPE not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        j = data.find(ESCAPE, i)
        if j < 0:
            out += data[i:]
            break
        out += data[i:j]
        code = data[j + 1] if j + 1 < n else None
        if code == 0x01:
            out.append(ESCAPE)
        elif code == 0x02:
            out.append(FLAG)
        else:
            what = "at the end" if code is None else f"before {code:02x}"
            raise FrameError("bad_escape", f"escape byte 7d {what} at offset {j}")
        i = j + 2
    return bytes(out)


def decode(data: bytes) -> Frame:
    """One frame, with or without its 0x7E flags, still escaped."""
    if data[:1] == b"\x7e":
        data = data[1:]
    if data[-1:] == b"\x7e":
        data = data[:-1]
    if FLAG in data:
        raise FrameError(
            "bad_escape", f"unescaped 7e inside the frame at offset {data.index(FLAG)}"
        )
    if len(data) > 2 * MAX_FRAME:
        raise FrameError("oversized", f"{len(data)} bytes; no frame is longer than {2 * MAX_FRAME}")
    return _parse(unescape(data))


def _parse(raw: bytes) -> Frame:
    n = len(raw)
    if n < HEADER_2013 + 1:
        raise FrameError("truncated", f"{n} bytes, shorter than the smallest header")
    msg_id = int.from_bytes(raw[0:2])
    attrs = int.from_bytes(raw[2:4])
    if attrs & VERSION_BIT:
        head, version, phone = HEADER_2019, raw[4], raw[5:15]
    else:
        head, version, phone = HEADER_2013, None, raw[4:10]
    serial_at = head - 2
    total = index = 0
    if attrs & SPLIT_BIT:
        head += SPLIT_FIELDS
    length = attrs & LENGTH_MASK
    expected = head + length + 1
    if n < expected:
        raise FrameError(
            "truncated",
            f"message {msg_id:04x}: {n} bytes, its header says {expected} (body {length})",
        )
    if n > expected:
        raise FrameError(
            "bad_length",
            f"message {msg_id:04x}: {n} bytes, its header says {expected} (body {length})",
        )
    want, got = checksum(raw[:-1]), raw[-1]
    if want != got:
        raise FrameError(
            "bad_checksum", f"message {msg_id:04x}: checksum {got:02x}, the bytes give {want:02x}"
        )
    encryption = (attrs >> ENCRYPTION_SHIFT) & ENCRYPTION_MASK
    if encryption:
        kind = "RSA" if encryption == RSA else f"reserved scheme {encryption}"
        raise FrameError("encrypted", f"message {msg_id:04x}: body encrypted ({kind})")
    if attrs & SPLIT_BIT:
        total = int.from_bytes(raw[serial_at + 2 : serial_at + 4])
        index = int.from_bytes(raw[serial_at + 4 : serial_at + 6])
        if not 1 <= index <= total:
            raise FrameError("bad_packet", f"message {msg_id:04x}: packet {index} of {total}")
    return Frame(
        msg_id=msg_id,
        phone=phone.hex(),
        serial=int.from_bytes(raw[serial_at : serial_at + 2]),
        body=raw[head:-1],
        version=version,
        packet_total=total,
        packet_index=index,
    )


def encode(
    msg_id: int,
    phone: str,
    serial: int,
    body: bytes = b"",
    version: int | None = None,
    packet: tuple[int, int] | None = None,
) -> bytes:
    """A complete frame, escaped, flags included. `phone` is its digits (zero-padded on
    the left to 12 digits in the 2011/2013 header, 20 with a `version`, the 2019 one; extra
    leading zeros dropped); `packet` is (total, index) for one packet of a split message.
    A message to a terminal must use the header layout the terminal speaks: see `to`."""
    if len(body) > MAX_BODY:
        raise ValueError(f"body of {len(body)} bytes; a packet carries at most {MAX_BODY}")
    digits = 20 if version is not None else 12
    if len(phone) > digits:
        phone = phone.lstrip("0")
    if len(phone) > digits:
        raise ValueError(f"phone {phone!r} is longer than {digits} digits")
    attrs = len(body)
    header = bytearray(msg_id.to_bytes(2))
    if version is not None:
        attrs |= VERSION_BIT
    if packet is not None:
        attrs |= SPLIT_BIT
    header += attrs.to_bytes(2)
    if version is not None:
        header.append(version)
    header += bytes.fromhex(phone.rjust(digits, "0"))
    header += (serial & 0xFFFF).to_bytes(2)
    if packet is not None:
        total, index = packet
        header += total.to_bytes(2) + index.to_bytes(2)
    raw = bytes(header) + body
    return b"\x7e" + escape(raw + bytes([checksum(raw)])) + b"\x7e"


def to(terminal: Frame, msg_id: int, serial: int, body: bytes = b"") -> bytes:
    """A platform message for the terminal that sent `terminal`: its phone number, in its
    header layout (2013 or 2019 with its version)."""
    return encode(msg_id, terminal.phone, serial, body, terminal.version)


class FrameReader:
    """A terminal's TCP byte stream → frames. `feed(chunk)` returns the frames completed by
    the chunk and a FrameError for each stretch of bytes that is not one, in order; it
    never raises. Every 0x7E is a boundary (a closing flag and the next opening flag may be
    one byte or two), so after garbage or a bad frame it reads on from the next flag. The
    buffer never holds more than `max_frame` escaped bytes: a longer run without a flag is
    reported once as `oversized` and skipped to the next flag."""

    def __init__(self, max_frame: int = 2 * MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._started = False  # seen a flag: bytes from here on belong to frames
        self._skipping = False  # in an oversized run, until the next flag

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held (a slow-loris connection's cost)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        start = 0
        while start <= len(data):
            flag = data.find(FLAG, start)
            end = len(data) if flag < 0 else flag
            self._take(data[start:end], out)
            if flag < 0:
                break
            self._boundary(out)
            start = flag + 1
        return out

    def _take(self, chunk: bytes, out: list[Frame | FrameError]) -> None:
        if not chunk or self._skipping:
            return
        if not self._started:
            out.append(FrameError("garbage", f"{len(chunk)} bytes before any 7e flag"))
            self._skipping = True
            return
        if len(self._buf) + len(chunk) > self.max_frame:
            out.append(
                FrameError("oversized", f"more than {self.max_frame} bytes without a 7e flag")
            )
            self._buf.clear()
            self._skipping = True
            return
        self._buf += chunk

    def _boundary(self, out: list[Frame | FrameError]) -> None:
        self._started = True
        self._skipping = False
        if not self._buf:
            return
        data = bytes(self._buf)
        self._buf.clear()
        try:
            out.append(_parse(unescape(data)))
        except FrameError as exc:
            out.append(exc)


class Reassembler:
    """Split packets → whole messages. `add(frame)` gives back an unsplit frame as it is,
    None for a packet of a message not yet complete, and the message (one Frame, bodies
    joined in index order, the first packet's serial, packet fields 0) when its last
    missing packet arrives, in any order; a repeated packet replaces the earlier copy.
    It holds at most `max_messages` unfinished messages of at most `max_packets` packets:
    beyond that the oldest is dropped (counted in `dropped`) — a terminal that never
    finishes one cannot grow the gateway's memory — and a packet of a longer message is
    refused (FrameError `bad_packet`)."""

    def __init__(self, max_messages: int = 16, max_packets: int = 256) -> None:
        self.max_messages = max_messages
        self.max_packets = max_packets
        self.dropped = 0
        self._open: OrderedDict[tuple[str, int, int, int], dict[int, Frame]] = OrderedDict()

    def add(self, frame: Frame) -> Frame | None:
        if not frame.split:
            return frame
        if frame.packet_total > self.max_packets:
            raise FrameError(
                "bad_packet",
                f"message {frame.msg_id:04x} in {frame.packet_total} packets;"
                f" at most {self.max_packets} are accepted",
            )
        # Packets of one message carry consecutive serials: the first one's names it.
        first = (frame.serial - frame.packet_index + 1) & 0xFFFF
        key = (frame.phone, frame.msg_id, frame.packet_total, first)
        parts = self._open.pop(key, None) or {}
        parts[frame.packet_index] = frame
        if len(parts) < frame.packet_total:
            self._open[key] = parts
            while len(self._open) > self.max_messages:
                self._open.popitem(last=False)
                self.dropped += 1
            return None
        return Frame(
            msg_id=frame.msg_id,
            phone=frame.phone,
            serial=first,
            body=b"".join(parts[i].body for i in range(1, frame.packet_total + 1)),
            version=frame.version,
        )
