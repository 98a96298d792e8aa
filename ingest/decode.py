"""Device message → validated `Fix`/`DeviceEvent`s, or rejections with their reason.

Nothing a device sends can raise out of here: every failure becomes a `Rejection` whose
`reason` is one of a small fixed set (a metrics label) and whose `detail` says exactly
what was wrong, for the operator reading the rejected-messages log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from geofence.crs import gcj02_to_wgs84
from geofence.model import DeviceEvent, Fix
from ingest.messages import EvtMessage, FixEntry, LocBatch, LocMessage, OwnTracksMessage

MAX_PAYLOAD = 256 * 1024
MAX_BATCH = 2000
MAX_FUTURE_MS = 10 * 60_000  # device clocks drift; beyond this the clock is wrong
MAX_AGE_MS = 31 * 86_400_000
MAX_SEQ = (
    2**63
)  # stored as bigint  # buffered uploads older than a month are not positions to act on
EVENT_TYPES = frozenset(
    {"strap_open", "strap_cut", "power_off", "low_battery", "charging", "sos", "boot"}
)
STRAP = frozenset({"ok", "open", "cut"})
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_loc = msgspec.json.Decoder(LocMessage)
_loc_batch = msgspec.json.Decoder(LocBatch)
_entry = msgspec.json.Decoder(FixEntry)
_evt = msgspec.json.Decoder(EvtMessage)
_owntracks = msgspec.json.Decoder(OwnTracksMessage)


class Rejection(msgspec.Struct, frozen=True):
    topic: str
    payload: bytes
    reason: str  # topic | too_large | malformed | schema | version | unknown_device | ...
    detail: str


class Decoded(msgspec.Struct):
    fixes: list[Fix] = msgspec.field(default_factory=list)
    events: list[DeviceEvent] = msgspec.field(default_factory=list)
    rejections: list[Rejection] = msgspec.field(default_factory=list)


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode(
    topic: str,
    payload: bytes,
    at: int,
    devices: Mapping[str, str],
    owntracks: Mapping[str, str],
) -> Decoded:
    """`devices` maps known device ids to their owner, `owntracks` maps "<user>/<device>"
    of registered phones to device ids; `at` is when the message arrived (epoch ms)."""
    out = Decoded()
    try:
        if len(payload) > MAX_PAYLOAD:
            raise _Bad("too_large", f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD}")
        parts = topic.split("/")
        if len(parts) == 3 and parts[0] == "em" and parts[2] in ("loc", "evt"):
            device = parts[1]
            if not _DEVICE_ID.match(device):
                raise _Bad("topic", f"device id {device[:80]!r} is not a valid id")
            if device not in devices:
                raise _Bad("unknown_device", f"device {device} is not registered")
            if parts[2] == "loc":
                _loc_message(topic, payload, at, device, out)
            else:
                out.events.append(_event(payload, at, device))
        elif len(parts) == 3 and parts[0] == "owntracks":
            phone = owntracks.get(f"{parts[1]}/{parts[2]}")
            if phone is None or phone not in devices:
                raise _Bad("unknown_device", f"no phone registered as {parts[1]}/{parts[2]}")
            fix = _owntracks_fix(payload, at, phone)
            if fix is not None:
                out.fixes.append(fix)
        else:
            raise _Bad("topic", f"not a device topic: {topic[:120]!r}")
    except _Bad as bad:
        out.rejections.append(Rejection(topic, payload, bad.reason, bad.detail))
    except Exception as exc:  # whatever a device sends must not stop ingest
        reason = f"undecodable: {exc!r}"
        out = Decoded(rejections=[Rejection(topic, payload, "malformed", reason)])
    return out


def _decode(decoder: msgspec.json.Decoder, raw: bytes | msgspec.Raw, what: str) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _Bad("schema", f"{what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _Bad("malformed", f"{what}: not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise _Bad("malformed", f"{what}: not valid UTF-8") from None
    except RecursionError:
        raise _Bad("malformed", f"{what}: nested too deeply") from None


def _loc_message(topic: str, payload: bytes, at: int, device: str, out: Decoded) -> None:
    # First with the batch typed: one decoder call for a single fix's envelope or for a
    # whole well-formed batch (the common cases). Anything else goes entry by entry, so each
    # bad entry is kept with its own bytes and reason.
    try:
        msg: LocBatch | LocMessage = _loc_batch.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        msg = _decode(_loc, payload, "message")
    if msg.v != 1:
        raise _Bad("version", f"format version {msg.v} is not supported (expected 1)")
    if msg.dev is not None and msg.dev != device:
        raise _Bad("topic", f"payload says device {msg.dev[:80]!r} but the topic says {device}")
    if msg.batch is None:
        out.fixes.append(_fix(_decode(_entry, payload, "fix"), at, device))
        return
    if not msg.batch:
        raise _Bad("schema", "batch is empty")
    if len(msg.batch) > MAX_BATCH:
        raise _Bad("too_large", f"batch of {len(msg.batch)} fixes, limit {MAX_BATCH}")
    if isinstance(msg, LocBatch):
        try:
            out.fixes += [_fix(entry, at, device) for entry in msg.batch]
            return
        except _Bad:
            pass
    entries: LocMessage = msg if isinstance(msg, LocMessage) else _decode(_loc, payload, "message")
    for index, raw in enumerate(entries.batch or ()):
        try:
            out.fixes.append(_fix(_decode(_entry, raw, f"batch[{index}]"), at, device))
        except _Bad as bad:
            # Keep the good entries of a batch; record each bad one with its position.
            out.rejections.append(Rejection(topic, bytes(raw), bad.reason, bad.detail))


def _check_time(ts: int, at: int) -> None:
    if ts - at > MAX_FUTURE_MS:
        raise _Bad("ts_future", f"ts {ts} is {(ts - at) // 1000} s ahead of arrival")
    if at - ts > MAX_AGE_MS:
        raise _Bad("ts_too_old", f"ts {ts} is {(at - ts) // 86_400_000} days before arrival")


def _finite(name: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise _Bad("out_of_range", f"{name} is not a finite number")
    if not low <= value <= high:
        raise _Bad("out_of_range", f"{name} {value} is outside {low}..{high}")


def _seq(seq: int) -> None:
    if not 0 <= seq < MAX_SEQ:
        raise _Bad("out_of_range", f"seq must be an integer from 0 to {MAX_SEQ - 1}")


def _fix(e: FixEntry, at: int, device: str) -> Fix:
    _seq(e.seq)
    _check_time(e.ts, at)
    _finite("acc", e.acc, 0.0, 100_000.0)
    _finite("spd", e.spd, 0.0, 1000.0)
    _finite("hdg", e.hdg, 0.0, 360.0)
    if e.batt is not None and not 0 <= e.batt <= 100:
        raise _Bad("out_of_range", f"batt {e.batt} is outside 0..100")
    if e.strap is not None and e.strap not in STRAP:
        raise _Bad("schema", f"strap must be ok, open or cut, got {e.strap[:40]!r}")
    if e.src is not None and (len(e.src) > 16 or not e.src.isprintable()):
        raise _Bad("schema", "src must be a short printable name (gps, bds, wifi, cell, mixed)")
    lat, lon, gcj02 = e.lat, e.lon, False
    if not e.fix:
        lat = lon = None
    else:
        if lat is None or lon is None:
            raise _Bad("schema", "a fix needs lat and lon (or fix: false)")
        _finite("lat", lat, -90.0, 90.0)
        _finite("lon", lon, -180.0, 180.0)
        crs = (e.crs or "wgs84").lower().replace("-", "")
        if crs == "gcj02":
            wlat, wlon = gcj02_to_wgs84(lat, lon)
            lat, lon, gcj02 = float(wlat), float(wlon), True
        elif crs != "wgs84":
            raise _Bad("crs", f"crs must be wgs84 or gcj02, got {crs[:40]!r}")
    return Fix(
        device=device,
        seq=e.seq,
        ts=e.ts,
        at=at,
        lat=lat,
        lon=lon,
        acc=e.acc,
        src=e.src,
        spd=e.spd,
        hdg=e.hdg,
        batt=e.batt,
        chg=e.chg,
        strap=e.strap,
        gcj02=gcj02,
    )


def _event(payload: bytes, at: int, device: str) -> DeviceEvent:
    msg: EvtMessage = _decode(_evt, payload, "event")
    if msg.v != 1:
        raise _Bad("version", f"format version {msg.v} is not supported (expected 1)")
    if msg.dev is not None and msg.dev != device:
        raise _Bad("topic", f"payload says device {msg.dev[:80]!r} but the topic says {device}")
    if msg.type not in EVENT_TYPES:
        raise _Bad("schema", f"unknown event type {msg.type[:40]!r}")
    _seq(msg.seq)
    _check_time(msg.ts, at)
    return DeviceEvent(device=device, seq=msg.seq, ts=msg.ts, at=at, type=msg.type)


def _owntracks_fix(payload: bytes, at: int, device: str) -> Fix | None:
    msg: OwnTracksMessage = _decode(_owntracks, payload, "OwnTracks message")
    if msg.type_ != "location":
        return None  # waypoints, transitions, cards…: valid OwnTracks, not positions
    if msg.lat is None or msg.lon is None or msg.tst is None:
        raise _Bad("schema", "an OwnTracks location needs lat, lon and tst")
    ts = msg.tst * 1000
    entry = FixEntry(
        seq=msg.tst,  # OwnTracks has no sequence number; one fix per second at most
        ts=ts,
        lat=msg.lat,
        lon=msg.lon,
        acc=msg.acc,
        spd=msg.vel / 3.6 if msg.vel is not None and msg.vel >= 0 else None,
        hdg=msg.cog,
        batt=msg.batt,
        chg=msg.bs in (2, 3) if msg.bs is not None else None,
    )
    return _fix(entry, at, device)
