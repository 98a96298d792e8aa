"""Device message → validated `Fix`/`DeviceEvent`s, or rejections with their reason.

Nothing a device sends can raise out of here: every failure becomes a `Rejection` whose
`reason` is one of a small fixed set (a metrics label) and whose `detail` says exactly
what was wrong, for the operator reading the rejected-messages log.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from fencewatch.metrics import MESSAGES_IGNORED
from geofence.crs import gcj02_to_wgs84
from geofence.model import DeviceEvent, Fix
from geofence.ruleset import RuleSet
from ingest import osmand as osmand_protocol
from ingest.messages import (
    EvtMessage,
    FixEntry,
    Invalid,
    LocBatch,
    LocMessage,
    OwnTracksEnvelope,
    OwnTracksLocation,
    OwnTracksLwt,
    OwnTracksTransition,
    Seconds,
    read_json,
)
from ingest.topics import CMD, CMD_ACK, LOC, OSMAND, OWNTRACKS, TAG
from ingest.topics import parse as parse_topic

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
_DOWNLINK = (CMD, CMD_ACK)  # topics a device reads or answers on: nothing to decode
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_loc = msgspec.json.Decoder(LocMessage)
_loc_batch = msgspec.json.Decoder(LocBatch)
_entry = msgspec.json.Decoder(FixEntry)
_evt = msgspec.json.Decoder(EvtMessage)


class Rejection(msgspec.Struct, frozen=True):
    topic: str
    payload: bytes
    reason: str  # topic | too_large | malformed | schema | version | unknown_device | ...
    detail: str


class Ignored(msgspec.Struct, frozen=True):
    """A valid message that carries nothing to judge or keep (an OwnTracks waypoint, card…):
    counted by `reason` in fencewatch_messages_ignored_total, not rejected."""

    topic: str
    reason: str


class DetailedEvent(DeviceEvent, frozen=True):
    """A device event and what the device said about it (an OwnTracks transition's region,
    a status report), kept with the event in the device's history."""

    detail: dict[str, Any] | None = None


class Decoded(msgspec.Struct):
    fixes: list[Fix] = msgspec.field(default_factory=list)
    events: list[DeviceEvent] = msgspec.field(default_factory=list)
    rejections: list[Rejection] = msgspec.field(default_factory=list)
    ignored: list[Ignored] = msgspec.field(default_factory=list)


def decode_for(rules: RuleSet, topic: str, payload: bytes, at: int) -> Decoded:
    """`decode` against the roster's registries of devices, OwnTracks and OsmAnd phones."""
    return decode(topic, payload, at, rules.device_owner, rules.owntracks, rules.osmand)


def decode_protected(rules: RuleSet, topic: str, payload: bytes, at: int) -> Decoded | None:
    """A protected person's phone's message (geofence.model.Protection), decoded as any
    phone's; None when the topic is not one of theirs."""
    named = parse_topic(topic)
    if named is None or not rules.protected:
        return None
    osmand = named.protocol == OSMAND  # the phone's id is in the request, not the topic
    if not osmand and rules.protection_of(named.device, named.protocol) is None:
        return None
    supervised = rules.owntracks if named.protocol == OWNTRACKS else rules.device_owner
    if named.device in supervised:
        return None  # a supervisee's device registered on the same topic: supervision wins
    owners = {device: p.person for device, p in rules.protected_devices.items()}
    out = decode(topic, payload, at, owners, rules.protected_owntracks, rules.protected_osmand)
    if osmand and any(r.reason == "unknown_device" for r in out.rejections):
        return None  # a supervisee's phone, or nobody's: decoded as such
    return out


def decode(
    topic: str,
    payload: bytes,
    at: int,
    devices: Mapping[str, str],
    owntracks: Mapping[str, str],
    osmand: Mapping[str, str] | None = None,
) -> Decoded:
    """`devices` maps known device ids to their owner, `owntracks` maps "<user>/<device>"
    of registered phones to device ids, `osmand` the OsmAnd ids phones send to device ids;
    `at` is when the message arrived (epoch ms)."""
    out = Decoded()
    try:
        if len(payload) > MAX_PAYLOAD:
            raise Invalid("too_large", f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD}")
        named = parse_topic(topic)
        if named is None or named.kind in _DOWNLINK:
            raise Invalid("topic", f"not a device topic: {topic[:120]!r}")
        if named.protocol == TAG:
            device = named.device
            if not _DEVICE_ID.match(device):
                raise Invalid("topic", f"device id {device[:80]!r} is not a valid id")
            if device not in devices:
                raise Invalid("unknown_device", f"device {device} is not registered")
            if named.kind == LOC:
                _loc_message(topic, payload, at, device, out)
            else:
                out.events.append(_event(payload, at, device))
        elif named.protocol == OWNTRACKS:
            phone = owntracks.get(named.device)
            if phone is None or phone not in devices:
                raise Invalid("unknown_device", f"no phone registered as {named.device}")
            _owntracks(topic, payload, at, phone, out)
        else:
            _osmand(topic, named.device, payload, at, devices, osmand or {}, out)
    except Invalid as bad:
        out.rejections.append(Rejection(topic, payload, bad.reason, bad.detail))
    except Exception as exc:  # whatever a device sends must not stop ingest
        reason = f"undecodable: {exc!r}"
        out = Decoded(rejections=[Rejection(topic, payload, "malformed", reason)])
    for ignored in out.ignored:
        MESSAGES_IGNORED.labels(ignored.reason).inc()
    return out


def _loc_message(topic: str, payload: bytes, at: int, device: str, out: Decoded) -> None:
    # First with the batch typed: one decoder call for a single fix's envelope or for a
    # whole well-formed batch (the common cases). Anything else goes entry by entry, so each
    # bad entry is kept with its own bytes and reason.
    try:
        msg: LocBatch | LocMessage = _loc_batch.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        msg = read_json(_loc, payload, "message")
    if msg.v != 1:
        raise Invalid("version", f"format version {msg.v} is not supported (expected 1)")
    if msg.dev is not None and msg.dev != device:
        raise Invalid("topic", f"payload says device {msg.dev[:80]!r} but the topic says {device}")
    if msg.batch is None:
        out.fixes.append(_fix(read_json(_entry, payload, "fix"), at, device))
        return
    if not msg.batch:
        raise Invalid("schema", "batch is empty")
    if len(msg.batch) > MAX_BATCH:
        raise Invalid("too_large", f"batch of {len(msg.batch)} fixes, limit {MAX_BATCH}")
    if isinstance(msg, LocBatch):
        try:
            out.fixes += [_fix(entry, at, device) for entry in msg.batch]
            return
        except Invalid:
            pass
    entries: LocMessage = (
        msg if isinstance(msg, LocMessage) else read_json(_loc, payload, "message")
    )
    for index, raw in enumerate(entries.batch or ()):
        try:
            out.fixes.append(_fix(read_json(_entry, raw, f"batch[{index}]"), at, device))
        except Invalid as bad:
            # Keep the good entries of a batch; record each bad one with its position.
            out.rejections.append(Rejection(topic, bytes(raw), bad.reason, bad.detail))


def _check_time(ts: int, at: int) -> None:
    if ts - at > MAX_FUTURE_MS:
        raise Invalid("ts_future", f"ts {ts} is {(ts - at) // 1000} s ahead of arrival")
    if at - ts > MAX_AGE_MS:
        raise Invalid("ts_too_old", f"ts {ts} is {(at - ts) // 86_400_000} days before arrival")


def _finite(name: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise Invalid("out_of_range", f"{name} is not a finite number")
    if not low <= value <= high:
        raise Invalid("out_of_range", f"{name} {value} is outside {low}..{high}")


def _seq(seq: int) -> None:
    if not 0 <= seq < MAX_SEQ:
        raise Invalid("out_of_range", f"seq must be an integer from 0 to {MAX_SEQ - 1}")


def _fix(e: FixEntry, at: int, device: str) -> Fix:
    _seq(e.seq)
    _check_time(e.ts, at)
    _finite("acc", e.acc, 0.0, 100_000.0)
    _finite("spd", e.spd, 0.0, 1000.0)
    _finite("hdg", e.hdg, 0.0, 360.0)
    if e.batt is not None and not 0 <= e.batt <= 100:
        raise Invalid("out_of_range", f"batt {e.batt} is outside 0..100")
    if e.strap is not None and e.strap not in STRAP:
        raise Invalid("schema", f"strap must be ok, open or cut, got {e.strap[:40]!r}")
    if e.src is not None and (len(e.src) > 16 or not e.src.isprintable()):
        raise Invalid("schema", "src must be a short printable name (gps, bds, wifi, cell, mixed)")
    lat, lon, gcj02 = e.lat, e.lon, False
    if not e.fix:
        lat = lon = None
    else:
        if lat is None or lon is None:
            raise Invalid("schema", "a fix needs lat and lon (or fix: false)")
        _finite("lat", lat, -90.0, 90.0)
        _finite("lon", lon, -180.0, 180.0)
        crs = (e.crs or "wgs84").lower().replace("-", "")
        if crs == "gcj02":
            wlat, wlon = gcj02_to_wgs84(lat, lon)
            lat, lon, gcj02 = float(wlat), float(wlon), True
        elif crs != "wgs84":
            raise Invalid("crs", f"crs must be wgs84 or gcj02, got {crs[:40]!r}")
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
    msg: EvtMessage = read_json(_evt, payload, "event")
    if msg.v != 1:
        raise Invalid("version", f"format version {msg.v} is not supported (expected 1)")
    if msg.dev is not None and msg.dev != device:
        raise Invalid("topic", f"payload says device {msg.dev[:80]!r} but the topic says {device}")
    if msg.type not in EVENT_TYPES:
        raise Invalid("schema", f"unknown event type {msg.type[:40]!r}")
    _seq(msg.seq)
    _check_time(msg.ts, at)
    return DeviceEvent(device=device, seq=msg.seq, ts=msg.ts, at=at, type=msg.type)


# --- OsmAnd ------------------------------------------------------------------------------


def _osmand(
    topic: str,
    addressed: str,
    payload: bytes,
    at: int,
    devices: Mapping[str, str],
    osmand: Mapping[str, str],
    out: Decoded,
) -> None:
    """Add what an OsmAnd request (ingest.osmand) says to `out`; raise Invalid when none of
    it can be used. `osmand` maps registered phones' OsmAnd ids to device ids; the id must
    be the device's the topic is `addressed` to, if any."""
    report = osmand_protocol.read(payload)
    device = osmand.get(report.id)
    if device is None or device not in devices:
        raise Invalid("unknown_device", f"no phone registered as OsmAnd id {report.id[:64]!r}")
    if addressed and addressed != device:
        raise Invalid(
            "topic", f"OsmAnd id {report.id[:64]!r} is {device}, the topic says {addressed}"
        )
    ts = at if report.ts is None else report.ts
    if ts == 0:
        raise Invalid("out_of_range", "timestamp 0: the device has no clock time")
    _check_time(ts, at)
    seq = ts // 1000
    if report.alarm:
        out.events.append(DeviceEvent(device=device, seq=seq, ts=ts, at=at, type="sos"))
    try:
        out.fixes.append(_fix(osmand_protocol.entry(report, ts, seq), at, device))
    except Invalid as bad:
        if not out.events:
            raise
        # The SOS stands even when the position it came with does not.
        out.rejections.append(Rejection(topic, payload, bad.reason, bad.detail))


# --- OwnTracks ------------------------------------------------------------------------------

# Valid OwnTracks types with nothing to judge or keep; any other `_type` is ignored too, as
# `owntracks_other` (a label per unknown type would let a device grow the metrics at will).
OWNTRACKS_IGNORED = frozenset(
    {
        "beacon",
        "card",
        "cmd",
        "configuration",
        "encrypted",
        "msg",
        "request",
        "steps",
        "waypoint",
        "waypoints",
    }
)
_SECONDS = re.compile(r"[0-9]{1,16}")
_CHARGING = {0: None, 1: False, 2: True, 3: True}  # bs: unknown, unplugged, charging, full
_TRANSITIONS = ("enter", "leave")
N = TypeVar("N", int, float)

_ot_envelope = msgspec.json.Decoder(OwnTracksEnvelope)
_ot_location = msgspec.json.Decoder(OwnTracksLocation)
_ot_lwt = msgspec.json.Decoder(OwnTracksLwt)
_ot_transition = msgspec.json.Decoder(OwnTracksTransition)
_ot_object = msgspec.json.Decoder(dict[str, Any])
_ot_array = msgspec.json.Decoder(list[msgspec.Raw])


def _owntracks(topic: str, payload: bytes, at: int, device: str, out: Decoded) -> None:
    """One OwnTracks message, or a JSON array of them: each element is taken on its own, so
    a bad one is rejected (its index in the detail) and the others are kept."""
    if payload.lstrip()[:1] != b"[":
        _owntracks_message(topic, payload, at, device, out)
        return
    elements: list[msgspec.Raw] = read_json(_ot_array, payload, "OwnTracks array")
    if len(elements) > MAX_BATCH:
        raise Invalid("too_large", f"array of {len(elements)} messages, limit {MAX_BATCH}")
    if not elements:
        out.ignored.append(Ignored(topic, "owntracks_empty_array"))
    for index, element in enumerate(elements):
        raw = bytes(element)
        try:
            _owntracks_message(topic, raw, at, device, out)
        except Invalid as bad:
            detail = f"element {index}: {bad.detail}"
            out.rejections.append(Rejection(topic, raw, bad.reason, detail))


def _owntracks_message(topic: str, raw: bytes, at: int, device: str, out: Decoded) -> None:
    kind = read_json(_ot_envelope, raw, "OwnTracks message").type_
    if kind == "location":
        out.fixes.append(_ot_fix(read_json(_ot_location, raw, "OwnTracks location"), at, device))
    elif kind == "lwt":
        out.events.append(_ot_lwt_event(read_json(_ot_lwt, raw, "OwnTracks lwt"), at, device))
    elif kind == "transition":
        msg = read_json(_ot_transition, raw, "OwnTracks transition")
        out.events.append(_ot_transition_event(msg, at, device))
    elif kind == "status":
        out.events.append(
            _ot_status_event(read_json(_ot_object, raw, "OwnTracks status"), at, device)
        )
    else:
        reason = f"owntracks_{kind}" if kind in OWNTRACKS_IGNORED else "owntracks_other"
        out.ignored.append(Ignored(topic, reason))


def _ot_ms(value: Seconds, name: str) -> int:
    """An OwnTracks time (epoch seconds, as a number or a numeric string) in epoch ms."""
    if isinstance(value, str):
        if not _SECONDS.fullmatch(value):
            raise Invalid("schema", f"{name} must be epoch seconds, got {value[:40]!r}")
        value = int(value)
    if not 0 < value < MAX_SEQ // 1000:
        raise Invalid("out_of_range", f"{name} {value} is not a time in epoch seconds")
    return value * 1000


def _available(value: N | None) -> N | None:
    """The apps' -1 for "not available" as None."""
    return None if value == -1 else value


def _ot_fix(msg: OwnTracksLocation, at: int, device: str) -> Fix:
    tst_ms = _ot_ms(msg.tst, "tst")
    if msg.lat == 0 and msg.lon == 0:
        raise Invalid("out_of_range", "lat 0, lon 0 (null island) stands for no position")
    if msg.bs is not None and msg.bs not in _CHARGING:
        raise Invalid("schema", f"bs must be 0, 1, 2 or 3, got {msg.bs}")
    acc, vel, batt = _available(msg.acc), _available(msg.vel), _available(msg.batt)
    # OwnTracks numbers nothing and times fixes in whole seconds. seq is that second, so
    # the engine's window of recent sequence numbers catches a redelivery from the last
    # minute as it does a tag's; the milliseconds the app cut off are filled with a digest
    # of the position, so a redelivered fix is the very same (device, ts, seq) and is stored
    # once, while two different fixes within one second are two rows (when the later one
    # has the lower digest the engine takes it for a redelivery: judged once, both kept).
    digest = zlib.crc32(f"{msg.lat!r},{msg.lon!r}".encode()) % 1000
    entry = FixEntry(
        seq=tst_ms // 1000,
        ts=tst_ms + digest,
        lat=msg.lat,
        lon=msg.lon,
        # 0 m is no accuracy either: Android reports 0 for a fix that has none.
        acc=acc or None,
        spd=None if vel is None else vel / 3.6,  # km/h
        hdg=_available(msg.cog),
        batt=batt,
        chg=None if msg.bs is None else _CHARGING[msg.bs],
    )
    return _fix(entry, at, device)


def _ot_event(device: str, seq: int, ts: int, at: int, kind: str, detail: Any) -> DetailedEvent:
    # PostgreSQL's jsonb takes no NUL character: a detail holding one would fail the commit.
    if detail is not None and b"\\u0000" in msgspec.json.encode(detail):
        raise Invalid("schema", f"OwnTracks {kind}: a string holds a NUL character")
    return DetailedEvent(device=device, seq=seq, ts=ts, at=at, type=kind, detail=detail)


def _ot_lwt_event(msg: OwnTracksLwt, at: int, device: str) -> DetailedEvent:
    # The broker publishes the will when the connection has died: that is now, the arrival.
    # Its `tst` (Android sends none) says which connection it was; a will redelivered after
    # a crash between commit and broker ack arrives at another time and is a second row.
    connected = None if msg.tst is None else _ot_ms(msg.tst, "tst")
    detail = None if connected is None else {"connected_at": connected}
    return _ot_event(device, (connected or 0) // 1000, at, at, "lwt", detail)


def _ot_transition_event(msg: OwnTracksTransition, at: int, device: str) -> DetailedEvent:
    ts = _ot_ms(msg.tst, "tst")
    _check_time(ts, at)
    if msg.event not in _TRANSITIONS:
        raise Invalid("schema", f"transition event must be enter or leave, got {msg.event[:40]!r}")
    _finite("lat", msg.lat, -90.0, 90.0)
    _finite("lon", msg.lon, -180.0, 180.0)
    _finite("acc", msg.acc, 0.0, 100_000.0)
    detail = {k: v for k, v in msgspec.structs.asdict(msg).items() if v is not None and k != "tst"}
    # Two regions entered in the same second are two events; a redelivery is the same one.
    seq = zlib.crc32(msgspec.json.encode(detail))
    return _ot_event(device, seq, ts, at, "transition", detail)


def _ot_status_event(msg: dict[str, Any], at: int, device: str) -> DetailedEvent:
    # A status report is untimed: it is the phone's state when it arrives.
    detail = {k: v for k, v in msg.items() if k != "_type"}
    return _ot_event(device, zlib.crc32(msgspec.json.encode(detail)), at, at, "status", detail)
