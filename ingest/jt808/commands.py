"""JT/T 808 platform messages (what the platform sends a terminal): bodies built for
`frame.encode`, and read back (the simulated terminal reads them; tests check them).

Public interface:
- `general_response_body(serial, msg_id, result=OK)` — 0x8001, the answer to every
  terminal message that has no answer of its own.
- `registration_response_body(serial, result, auth_code)` — 0x8100.
- `text_message_body(text, flags=TEXT_DISPLAY, version=None)` — 0x8300 (GBK text).
- `parameters_body({param id: value})` and `report_interval_params(seconds)` — 0x8103.
- location query 0x8201 has an empty body.
- `read_general_response`, `read_registration_response`, `read_text_message`,
  `read_parameters`: the bodies read back (raising ingest.messages.Invalid `short_body`).
"""

from __future__ import annotations

import msgspec

from ingest.jt808.messages import need

GENERAL_RESPONSE = 0x8001
REGISTRATION_RESPONSE = 0x8100
SET_PARAMETERS = 0x8103
LOCATION_QUERY = 0x8201
TEXT_MESSAGE = 0x8300

# 0x8001 results
OK = 0
FAILURE = 1
BAD_MESSAGE = 2
UNSUPPORTED = 3
ALARM_CONFIRMED = 4

# 0x8100 results
REGISTERED = 0
VEHICLE_TAKEN = 1
NO_SUCH_VEHICLE = 2
TERMINAL_TAKEN = 3
NO_SUCH_TERMINAL = 4

# 0x8300 flags (2013): bit 0 emergency, bit 2 show on the terminal's display, bit 3 read
# aloud (TTS). 2019 adds a text-type byte after the flags: 1 notice, 2 service.
TEXT_EMERGENCY = 1 << 0
TEXT_DISPLAY = 1 << 2
TEXT_TTS = 1 << 3
TEXT_TYPE_NOTICE = 1

# 0x8103 parameters (DWORD values), JT/T 808-2013 table 12.
HEARTBEAT_INTERVAL = 0x0001
SLEEP_REPORT_INTERVAL = 0x0027
ALARM_REPORT_INTERVAL = 0x0028
DEFAULT_REPORT_INTERVAL = 0x0029


class GeneralResponse(msgspec.Struct, frozen=True):
    serial: int
    msg_id: int
    result: int


class RegistrationResponse(msgspec.Struct, frozen=True):
    serial: int
    result: int
    auth_code: str


class TextMessage(msgspec.Struct, frozen=True):
    flags: int
    text: str


def general_response_body(serial: int, msg_id: int, result: int = OK) -> bytes:
    return serial.to_bytes(2) + msg_id.to_bytes(2) + bytes([result])


def registration_response_body(serial: int, result: int, auth_code: str = "") -> bytes:
    """The auth code is sent only with REGISTERED: the terminal authenticates with it."""
    tail = auth_code.encode("gbk") if result == REGISTERED else b""
    return serial.to_bytes(2) + bytes([result]) + tail


def text_message_body(text: str, flags: int = TEXT_DISPLAY, version: int | None = None) -> bytes:
    head = bytes([flags]) if version is None else bytes([flags, TEXT_TYPE_NOTICE])
    return head + text.encode("gbk", "replace")


def parameters_body(params: dict[int, int]) -> bytes:
    """0x8103 with DWORD parameters (every interval and threshold in the standard is one)."""
    out = bytearray([len(params)])
    for param, value in params.items():
        out += param.to_bytes(4) + bytes([4]) + value.to_bytes(4)
    return bytes(out)


def report_interval_params(seconds: int) -> dict[int, int]:
    """ "Report every `seconds`": the default interval, and the sleep-mode one too, because
    a wearer asked to report more often (pursuit, spec 4.1 `set_interval`) may be sitting
    still with the terminal asleep."""
    return {DEFAULT_REPORT_INTERVAL: seconds, SLEEP_REPORT_INTERVAL: seconds}


def read_general_response(body: bytes) -> GeneralResponse:
    need(body, 5, "general response")
    return GeneralResponse(int.from_bytes(body[0:2]), int.from_bytes(body[2:4]), body[4])


def read_registration_response(body: bytes) -> RegistrationResponse:
    need(body, 3, "registration response")
    code = body[3:].decode("gbk", "replace")
    return RegistrationResponse(int.from_bytes(body[0:2]), body[2], code)


def read_text_message(body: bytes, version: int | None = None) -> TextMessage:
    head = 1 if version is None else 2
    need(body, head, "text message")
    return TextMessage(body[0], body[head:].decode("gbk", "replace"))


def read_parameters(body: bytes) -> dict[int, bytes]:
    need(body, 1, "set parameters")
    params: dict[int, bytes] = {}
    at = 1
    for n in range(body[0]):
        need(body, at + 5, f"set parameters item {n + 1}")
        length = body[at + 4]
        need(body, at + 5 + length, f"set parameters item {n + 1}")
        params[int.from_bytes(body[at : at + 4])] = body[at + 5 : at + 5 + length]
        at += 5 + length
    return params
