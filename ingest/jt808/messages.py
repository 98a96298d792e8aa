"""JT/T 808 terminal messages (what a terminal sends the platform): bodies decoded, and
built (the simulated terminal sends them; tests build them).

Public interface:
- `read(frame)`: a terminal's frame → one of `Location` (0x0200), `Batch` (0x0704),
  `Registration` (0x0100), `Authentication` (0x0102), `Heartbeat` (0x0002),
  `TerminalResponse` (0x0001), `LocationReply` (0x0201); raises `ingest.messages.Invalid`
  with reason `unsupported` for another message id, or `short_body` for a body shorter
  than its layout.
- `location_body(...)`, `batch_body(...)`, `registration_body(...)`,
  `authentication_body(...)`, `terminal_response_body(...)`, `location_reply_body(...)`:
  the same bodies built, for `frame.encode`.

Location reports (0x0200, and each entry of 0x0704 and 0x0201): `alarm` and `status` are
the raw 32-bit words (constants below name the bits used); `lat`/`lon` are signed degrees
(the status' south/west bits applied), as the terminal sent them (WGS-84 by the standard;
see ingest.jt808.uplink for devices that send GCJ-02); `ts` is epoch ms, from the BCD time
the standard gives in UTC+8 (None when the terminal sent no valid time, as some do before
their first fix). Additional items: 0x01 mileage (0.1 km), 0x30 signal strength, 0x31
satellites are read; every item is also kept raw in `items` (the last copy of an id wins),
and a tail too short to be an item ends the list without refusing the report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from fencewatch.timefmt import epoch_ms
from ingest.jt808.frame import Frame
from ingest.messages import Invalid

HEARTBEAT = 0x0002
TERMINAL_RESPONSE = 0x0001
REGISTRATION = 0x0100
AUTHENTICATION = 0x0102
LOCATION = 0x0200
LOCATION_REPLY = 0x0201
BATCH = 0x0704

# Status bits (JT/T 808-2013 table 24).
STATUS_FIX = 1 << 1  # positioned
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3
STATUS_GPS = 1 << 18
STATUS_BDS = 1 << 19
STATUS_GLONASS = 1 << 20
STATUS_GALILEO = 1 << 21

ITEM_MILEAGE = 0x01
ITEM_SIGNAL = 0x30
ITEM_SATELLITES = 0x31

BATCH_NORMAL = 0
BATCH_BLIND_AREA = 1  # 盲区补报: fixes buffered while the terminal had no connection

CHINA_OFFSET = timedelta(hours=8)  # the standard's clock: GMT+8, whatever the terminal's zone
LOCATION_BASE = 28


class Location(msgspec.Struct, frozen=True):
    alarm: int
    status: int
    lat: float
    lon: float
    altitude: int  # metres
    speed_kmh: float
    course: int  # degrees from north
    ts: int | None  # epoch ms; None: no valid time
    mileage_km: float | None = None
    signal: int | None = None  # mobile network signal strength, as the terminal scales it
    satellites: int | None = None
    items: dict[int, bytes] = {}

    @property
    def fix_valid(self) -> bool:
        # Bit 5 (coordinates scrambled by an encryption plug-in) is not looked at: real
        # terminals set it on plain coordinates (tests/corpus/jt808, Jakarta, line 152).
        return bool(self.status & STATUS_FIX)


class Batch(msgspec.Struct, frozen=True):
    kind: int  # BATCH_NORMAL or BATCH_BLIND_AREA
    locations: list[Location]


class Registration(msgspec.Struct, frozen=True):
    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_color: int
    plate: str


class Authentication(msgspec.Struct, frozen=True):
    code: str
    imei: str | None = None  # 2019
    software: str | None = None  # 2019


class Heartbeat(msgspec.Struct, frozen=True):
    pass


class TerminalResponse(msgspec.Struct, frozen=True):
    """0x0001: the terminal's answer to a platform message (`serial`, `msg_id` of it)."""

    serial: int
    msg_id: int
    result: int  # 0 success, 1 failure, 2 message wrong, 3 not supported


class LocationReply(msgspec.Struct, frozen=True):
    """0x0201: the answer to a location query (0x8201) sent with `serial`."""

    serial: int
    location: Location


Message = (
    Location | Batch | Registration | Authentication | Heartbeat | TerminalResponse | LocationReply
)


def read(frame: Frame) -> Message:
    body, msg = frame.body, frame.msg_id
    if msg == LOCATION:
        return read_location(body)
    if msg == BATCH:
        return read_batch(body)
    if msg == HEARTBEAT:
        return Heartbeat()
    if msg == TERMINAL_RESPONSE:
        need(body, 5, "terminal response")
        return TerminalResponse(_u16(body, 0), _u16(body, 2), body[4])
    if msg == LOCATION_REPLY:
        need(body, 2 + LOCATION_BASE, "location reply")
        return LocationReply(_u16(body, 0), read_location(body[2:]))
    if msg == REGISTRATION:
        return read_registration(body, frame.version)
    if msg == AUTHENTICATION:
        return read_authentication(body, frame.version)
    raise Invalid("unsupported", f"message {msg:04x} is not one the platform reads")


def read_location(body: bytes) -> Location:
    need(body, LOCATION_BASE, "location report")
    status = _u32(body, 4)
    lat = _u32(body, 8) / 1e6
    lon = _u32(body, 12) / 1e6
    items = _items(body[LOCATION_BASE:])
    mileage = items.get(ITEM_MILEAGE)
    signal = items.get(ITEM_SIGNAL)
    satellites = items.get(ITEM_SATELLITES)
    return Location(
        alarm=_u32(body, 0),
        status=status,
        lat=-lat if status & STATUS_SOUTH else lat,
        lon=-lon if status & STATUS_WEST else lon,
        altitude=int.from_bytes(body[16:18], signed=True),
        speed_kmh=_u16(body, 18) / 10,
        course=_u16(body, 20),
        ts=_time(body[22:28]),
        mileage_km=int.from_bytes(mileage) / 10 if mileage and len(mileage) == 4 else None,
        signal=signal[0] if signal and len(signal) == 1 else None,
        satellites=satellites[0] if satellites and len(satellites) == 1 else None,
        items=items,
    )


def read_batch(body: bytes) -> Batch:
    need(body, 3, "batch upload")
    count, kind = _u16(body, 0), body[2]
    locations, at = [], 3
    for n in range(count):
        need(body, at + 2, f"batch upload entry {n + 1} of {count}")
        length = _u16(body, at)
        end = at + 2 + length
        if end > len(body):
            raise Invalid(
                "short_body", f"batch upload entry {n + 1} of {count}: {length} bytes, fewer sent"
            )
        locations.append(read_location(body[at + 2 : end]))
        at = end
    return Batch(kind=kind, locations=locations)


def read_registration(body: bytes, version: int | None) -> Registration:
    # Field lengths: 2011 maker 5, model 8, id 7; 2013 maker 5, model 20, id 7; 2019
    # maker 11, model 30, id 30. A 2011 terminal is told from a 2013 one by its length.
    if version is not None:
        maker, model, ident = 11, 30, 30
    elif len(body) < 2 + 2 + 5 + 20 + 7 + 1:
        maker, model, ident = 5, 8, 7
    else:
        maker, model, ident = 5, 20, 7
    fixed = 4 + maker + model + ident + 1
    need(body, fixed, "registration")
    at = 4
    fields = []
    for size in (maker, model, ident):
        fields.append(_text(body[at : at + size]))
        at += size
    return Registration(
        province=_u16(body, 0),
        city=_u16(body, 2),
        maker=fields[0],
        model=fields[1],
        terminal_id=fields[2],
        plate_color=body[at],
        plate=_text(body[fixed:]),
    )


def read_authentication(body: bytes, version: int | None) -> Authentication:
    if version is None:
        return Authentication(code=_text(body))
    need(body, 1, "authentication")
    length = body[0]
    need(body, 1 + length + 15 + 20, "authentication")
    return Authentication(
        code=_text(body[1 : 1 + length]),
        imei=_text(body[1 + length : 16 + length]),
        software=_text(body[16 + length : 36 + length]),
    )


# --- building ------------------------------------------------------------------------------


def location_body(
    lat: float,
    lon: float,
    ts: int,
    *,
    fix: bool = True,
    alarm: int = 0,
    status: int = 0,
    altitude: int = 0,
    speed_kmh: float = 0.0,
    course: int = 0,
    mileage_km: float | None = None,
    signal: int | None = None,
    satellites: int | None = None,
) -> bytes:
    """A 0x0200 body; `status` gets the fix and hemisphere bits from `fix`, `lat`, `lon`."""
    status &= ~(STATUS_FIX | STATUS_SOUTH | STATUS_WEST)
    status |= (STATUS_FIX if fix else 0) | (STATUS_SOUTH if lat < 0 else 0)
    status |= STATUS_WEST if lon < 0 else 0
    out = bytearray()
    out += alarm.to_bytes(4) + status.to_bytes(4)
    out += round(abs(lat) * 1e6).to_bytes(4) + round(abs(lon) * 1e6).to_bytes(4)
    out += altitude.to_bytes(2, signed=True)
    out += min(round(speed_kmh * 10), 0xFFFF).to_bytes(2) + (course % 360).to_bytes(2)
    out += _bcd_time(ts)
    if mileage_km is not None:
        out += bytes([ITEM_MILEAGE, 4]) + round(mileage_km * 10).to_bytes(4)
    if signal is not None:
        out += bytes([ITEM_SIGNAL, 1, signal])
    if satellites is not None:
        out += bytes([ITEM_SATELLITES, 1, satellites])
    return bytes(out)


def batch_body(locations: list[bytes], kind: int = BATCH_BLIND_AREA) -> bytes:
    out = bytearray(len(locations).to_bytes(2) + bytes([kind]))
    for body in locations:
        out += len(body).to_bytes(2) + body
    return bytes(out)


def registration_body(
    terminal_id: str,
    *,
    province: int = 33,  # 浙江
    city: int = 1100,  # 丽水
    maker: str = "FWSIM",
    model: str = "FW-SIM",
    plate_color: int = 0,  # 0: not a vehicle
    plate: str = "",
    version: int | None = None,
) -> bytes:
    sizes = (11, 30, 30) if version is not None else (5, 20, 7)
    out = bytearray(province.to_bytes(2) + city.to_bytes(2))
    for value, size in zip((maker, model, terminal_id), sizes, strict=True):
        out += _padded(value, size)
    out.append(plate_color)
    out += plate.encode("gbk")
    return bytes(out)


def authentication_body(
    code: str, *, version: int | None = None, imei: str = "", software: str = ""
) -> bytes:
    raw = code.encode("gbk")
    if version is None:
        return raw
    return bytes([len(raw)]) + raw + _padded(imei, 15) + _padded(software, 20)


def terminal_response_body(serial: int, msg_id: int, result: int = 0) -> bytes:
    return serial.to_bytes(2) + msg_id.to_bytes(2) + bytes([result])


def location_reply_body(serial: int, location: bytes) -> bytes:
    return serial.to_bytes(2) + location


# --- fields ----------------------------------------------------------------------------------


def need(body: bytes, size: int, what: str) -> None:
    """Invalid `short_body` unless `body` has `size` bytes for `what`."""
    if len(body) < size:
        raise Invalid("short_body", f"{what}: {len(body)} bytes, needs {size}")


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2])


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4])


def _items(data: bytes) -> dict[int, bytes]:
    items: dict[int, bytes] = {}
    at = 0
    while at + 2 <= len(data):
        item, length = data[at], data[at + 1]
        if at + 2 + length > len(data):
            break  # a vendor's malformed tail: the report itself stands
        items[item] = data[at + 2 : at + 2 + length]
        at += 2 + length
    return items


def _time(bcd: bytes) -> int | None:
    text = bcd.hex()
    if not text.isdigit() or text == "000000000000":
        return None
    try:
        local = datetime(
            2000 + int(text[0:2]),
            int(text[2:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return epoch_ms(local - CHINA_OFFSET)


def _bcd_time(ts: int) -> bytes:
    local = datetime.fromtimestamp(ts / 1000, UTC) + CHINA_OFFSET
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


def _text(raw: bytes) -> str:
    """A fixed-size text field: GBK, as the standard says, padded with NULs or spaces. Some
    terminals put binary there (their BCD phone number as the terminal id): that comes out
    as its hex digits rather than as control characters."""
    raw = raw.rstrip(b"\x00 ")
    text = raw.decode("gbk", "replace").lstrip("\x00 ")
    return text if text.isprintable() else raw.hex()


def _padded(value: str, size: int) -> bytes:
    raw = value.encode("gbk")[:size]
    return raw + bytes(size - len(raw))
