"""The engine's commands (spec 4.1 downlink, alerts.downlink) as JT/T 808 platform
messages, for the gateway to send on the terminal's connection.

    message       0x8300 text, shown and read aloud (TTS)
    vibrate       0x8300 marked urgent (the terminal's alarm tone), shown and read aloud
    return_now    0x8300 urgent, shown and read aloud, then 0x8201: a position at once
    set_interval  0x8103 reporting intervals (s; ingest.jt808.commands), then 0x8201
    locate        0x8201 location query (立即定位, alerts.locate)

The first message carries the command: the terminal's answer to it — 0x0001 with result
0, or for a location query its 0x0201 — is the device's acknowledgement. The location
query after a return order or a new interval gets a fresh position at once: pursuit (a
shorter interval) and a return order both want one without waiting an interval.
"""

from __future__ import annotations

import msgspec

from ingest.jt808 import commands as platform

VIBRATE_TEXT = "请注意"  # 0x8300 carries text; an urgent one makes the terminal sound


class Command(msgspec.Struct, frozen=True):
    v: int
    id: str
    type: str
    text: str | None = None
    interval_s: int | None = None


class Outgoing(msgspec.Struct, frozen=True):
    msg_id: int
    body: bytes
    command: str | None  # the command id its answer acknowledges


_command = msgspec.json.Decoder(Command)


def outgoing(payload: bytes, version: int | None = None) -> list[Outgoing]:
    """The platform messages for one spec 4.1 command, to a terminal speaking `version`
    (None: 2011/2013); ValueError for one that cannot be sent to a JT/T 808 terminal."""
    try:
        c = _command.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a spec 4.1 command: {exc}") from None
    locate = Outgoing(platform.LOCATION_QUERY, b"", None)
    if c.type == "locate":
        return [Outgoing(platform.LOCATION_QUERY, b"", c.id)]
    if c.type == "set_interval":
        if c.interval_s is None or not 0 < c.interval_s < 2**32:
            raise ValueError(f"set_interval needs interval_s, got {c.interval_s!r}")
        params = platform.parameters_body(platform.report_interval_params(c.interval_s))
        return [Outgoing(platform.SET_PARAMETERS, params, c.id), locate]
    urgent = platform.TEXT_EMERGENCY if c.type in ("vibrate", "return_now") else 0
    flags = urgent | platform.TEXT_DISPLAY | platform.TEXT_TTS
    text = c.text or (VIBRATE_TEXT if c.type == "vibrate" else "")
    if c.type not in ("message", "vibrate", "return_now") or not text:
        raise ValueError(f"{c.type!r} without text is nothing a JT/T 808 terminal can be sent")
    message = Outgoing(
        platform.TEXT_MESSAGE, platform.text_message_body(text, flags, version), c.id
    )
    return [message, locate] if c.type == "return_now" else [message]
