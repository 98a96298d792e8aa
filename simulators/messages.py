"""Device messages on the wire: spec 4.1 for tags, OwnTracks or OsmAnd (Traccar Client)
for phones.

Payloads are plain dicts, ready for JSON. Callers round coordinates as devices do (six
decimals of a degree is 0.1 m; OwnTracks sends seven, and whole metres and km/h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fencewatch.timefmt import iso

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One message a device publishes, before the network has had its way with it.
    `entry` marks a single fix, which a device with a backlog folds with others into one
    message: a tag's `batch`, an OwnTracks phone's JSON array."""

    ts: int
    topic: str
    payload: Payload
    entry: bool = False


def fix_entry(
    seq: int,
    ts: int,
    lat: float | None,
    lon: float | None,
    acc: float | None = None,
    src: str | None = None,
    spd: float | None = None,
    hdg: float | None = None,
    batt: int | None = None,
    chg: bool | None = None,
    strap: str | None = None,
    crs: str = "wgs84",
) -> Payload:
    """One fix as a `batch` entry (a single-fix message adds `v`); `lat`, `lon` are in
    `crs`, which the entry names unless it is WGS-84, and rounded as the device rounds
    them (six decimals: 0.1 m). Without a position the entry says
    `fix: false` and carries no lat/lon, as spec 4.1 requires."""
    entry: Payload = {"seq": seq, "ts": ts}
    if lat is None or lon is None:
        entry["fix"] = False
    else:
        if crs != "wgs84":
            entry["crs"] = crs
        entry["lat"] = lat
        entry["lon"] = lon
        if acc is not None:
            entry["acc"] = acc
        if src is not None:
            entry["src"] = src
        if spd is not None and math.isfinite(spd):
            entry["spd"] = spd
        if hdg is not None and math.isfinite(hdg):
            entry["hdg"] = int(hdg) % 360
    if batt is not None:
        entry["batt"] = batt
    if chg is not None:
        entry["chg"] = chg
    if strap is not None:
        entry["strap"] = strap
    return entry


def loc(entry: Payload) -> Payload:
    return {"v": 1, **entry}


def batch(entries: list[Payload]) -> Payload:
    return {"v": 1, "batch": [{k: v for k, v in e.items() if k != "v"} for e in entries]}


def evt(seq: int, ts: int, kind: str) -> Payload:
    return {"v": 1, "seq": seq, "ts": ts, "type": kind}


def owntracks_location(
    ts: int,
    lat: float,
    lon: float,
    acc: float,
    tid: str,
    batt: int | None = None,
    charging: bool | None = None,
    spd: float | None = None,
    hdg: float | None = None,
    trigger: str | None = None,
    wifi: bool = False,
    monitoring: int = 1,
) -> Payload:
    """An OwnTracks `location` message as the app publishes it (its JSON format: `tst`
    epoch seconds, `vel` km/h, `cog` degrees, `bs` 1 unplugged / 2 charging, `conn` w/m,
    `t` trigger: p ping, u manual, t timer, r reportLocation, c region, absent for a plain
    move; `m` monitoring mode: 1 significant, 2 move)."""
    msg: Payload = {
        "_type": "location",
        "tid": tid,
        "tst": ts // 1000,
        "lat": lat,
        "lon": lon,
        "acc": round(acc),
        "conn": "w" if wifi else "m",
        "m": monitoring,
        "created_at": ts // 1000,
    }
    if batt is not None:
        msg["batt"] = batt
        msg["bs"] = 2 if charging else 1
    if spd is not None and math.isfinite(spd):
        msg["vel"] = round(spd * 3.6)
    if hdg is not None and math.isfinite(hdg):
        msg["cog"] = round(hdg) % 360
    if trigger is not None:
        msg["t"] = trigger
    return msg


def owntracks_lwt(tst: int | str | None) -> Payload:
    """The will an OwnTracks app leaves with the broker when it connects, which the broker
    publishes once the connection has died: `tst` is when it connected. The iOS app of the
    OwnTracks recorder's demo recording sent it as a string; Android sends none."""
    return {"_type": "lwt"} if tst is None else {"_type": "lwt", "tst": tst}


def osmand_location(
    device_id: str,
    ts: int,
    lat: float,
    lon: float,
    acc: float,
    batt: int | None = None,
    charging: bool | None = None,
    spd: float | None = None,
    hdg: float | None = None,
    event: str = "",
) -> Payload:
    """The Traccar Client's JSON body for one location (its location template): ISO time
    with milliseconds, speed m/s and heading −1 when unknown, battery level 0..1 (−1
    unknown), the activity its motion detection names, and `_` repeating the essentials as
    a query string."""
    speed = spd if spd is not None and math.isfinite(spd) else -1.0
    moving = speed > 0.5
    activity = "still"
    if moving:
        activity = "on_foot" if speed < 2.5 else "on_bicycle" if speed < 7 else "in_vehicle"
    time = iso(ts)
    location: Payload = {
        "timestamp": time,
        "coords": {
            "latitude": lat,
            "longitude": lon,
            "accuracy": acc,
            "speed": speed,
            "heading": hdg if moving and hdg is not None and math.isfinite(hdg) else -1,
            "altitude": 0,
        },
        "is_moving": moving,
        "odometer": 0,
        "event": event,
        "battery": {
            "level": -1 if batt is None else batt / 100,
            "is_charging": bool(charging),
        },
        "activity": {"type": activity},
        "extras": {},
        "_": f"&id={device_id}&lat={lat}&lon={lon}&timestamp={time}&",
    }
    return {"location": location, "device_id": device_id}
