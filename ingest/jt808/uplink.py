"""Decoded JT/T 808 locations → fencewatch's own uplink (spec 4.1), the messages the gateway
publishes on `em/<device>/loc` and `em/<device>/evt`.

Public interface:
- `uplink(locations, at, crs="wgs84", previous_alarm=None)` → `Uplink`: `loc`, the
  `loc` payloads (one fix, or batches of at most ingest.decode.MAX_BATCH fixes), `events`,
  the `evt` payloads, and `alarm`, the last alarm word, to pass as `previous_alarm` with
  the terminal's next report.
- `fix_entry(location, at, crs)`, `alarm_events(alarm, previous)`: the two halves.

How the fields map:
- `seq` is the fix time in epoch seconds (JT/T 808's time has a resolution of one
  second, and terminals report no faster): a fix resent after a reconnect, in a 0x0200 or
  inside a 0x0704 blind-area upload, gets the seq it had the first time and is stored once.
- `ts` from the terminal's UTC+8 BCD time. A report without a valid time (some terminals
  send zeros before their first fix) becomes a report without a fix at the arrival time.
- `lat`/`lon` only when the status says the fix is valid (bit 1) and they are not 0, 0;
  otherwise `fix: false` and no
  position, never the stale position such terminals repeat. WGS-84 by the standard; a
  device configured `crs="gcj02"` says so in each fix and ingest.decode converts it
  (geofence.crs).
- `acc`: JT/T 808 has no accuracy field. It is estimated from the satellite count (item
  0x31) as HDOP × ingest.osmand.UERE_M, with the HDOP a satellite count typically gives
  in open sky (`_HDOP`); without a count it is left out, which the engine treats as poor.
- `src` from the status' constellation bits 18-21 (2013+): GPS only `gps`, BeiDou only
  `bds`, anything else `mixed`; a terminal that sets none (2011) sends no `src`.
- `spd` km/h × 10 → m/s; `hdg` the course. The signal strength (item 0x30) is the mobile
  network's, not the fix's: spec 4.1 has no field for it, so it is not sent.
- Alarm bits → events, each on the report where the bit comes on (the terminal keeps a
  bit set on every report while the condition lasts; every `sos` is an alert of its own):
  bit 0 emergency → `sos`; bit 7 main power under-voltage → `low_battery`; bit 8 main
  power cut → `power_off`; bits 16 and 17 → `strap_open`. The standard reserves 16 and 17;
  wristbands and personal trackers use them for tamper / removal (Traccar reads both as
  tampering), and a vehicle terminal has no use for them. `previous_alarm=None` (nothing
  known of the terminal, e.g. just connected) counts every set bit as new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ingest.decode import MAX_BATCH
from ingest.jt808.messages import (
    STATUS_BDS,
    STATUS_GALILEO,
    STATUS_GLONASS,
    STATUS_GPS,
    Location,
)
from ingest.osmand import UERE_M

KMH_MS = 1 / 3.6
CRS = frozenset({"wgs84", "gcj02"})

ALARM_EMERGENCY = 1 << 0
ALARM_UNDER_VOLTAGE = 1 << 7
ALARM_POWER_CUT = 1 << 8
ALARM_TAMPER = (1 << 16) | (1 << 17)
EVENTS = (
    (ALARM_EMERGENCY, "sos"),
    (ALARM_UNDER_VOLTAGE, "low_battery"),
    (ALARM_POWER_CUT, "power_off"),
    (ALARM_TAMPER, "strap_open"),
)

# Typical open-sky HDOP for a number of satellites used: (at least this many, HDOP).
# Four is the least for a 3-D fix; fewer (a 2-D or dead-reckoned fix) is poor.
_HDOP = ((10, 1.0), (7, 1.5), (5, 2.5), (4, 5.0), (0, 10.0))
_CONSTELLATIONS = ((STATUS_GPS, "gps"), (STATUS_BDS, "bds"))
_ANY_CONSTELLATION = STATUS_GPS | STATUS_BDS | STATUS_GLONASS | STATUS_GALILEO


class Uplink(msgspec.Struct, frozen=True):
    loc: list[bytes]  # em/<device>/loc payloads; empty for no locations
    events: list[bytes]  # em/<device>/evt payloads, in order
    alarm: int | None  # the last location's alarm word (previous_alarm if none)


def uplink(
    locations: Sequence[Location],
    at: int,
    crs: str = "wgs84",
    previous_alarm: int | None = None,
) -> Uplink:
    if crs not in CRS:
        raise ValueError(f"crs must be one of {sorted(CRS)}, got {crs!r}")
    entries, events = [], []
    alarm = previous_alarm
    for location in locations:
        entry = fix_entry(location, at, crs)
        entries.append(entry)
        for kind in alarm_events(location.alarm, alarm):
            event = {"v": 1, "seq": entry["seq"], "ts": entry["ts"], "type": kind}
            events.append(msgspec.json.encode(event))
        alarm = location.alarm
    if len(entries) == 1:
        loc = [msgspec.json.encode({"v": 1, **entries[0]})]
    else:
        loc = [
            msgspec.json.encode({"v": 1, "batch": entries[i : i + MAX_BATCH]})
            for i in range(0, len(entries), MAX_BATCH)
        ]
    return Uplink(loc=loc, events=events, alarm=alarm)


def fix_entry(location: Location, at: int, crs: str = "wgs84") -> dict[str, Any]:
    """One spec 4.1 fix (a batch entry; a single-fix message adds `v`)."""
    ts = at if location.ts is None else location.ts
    entry: dict[str, Any] = {"seq": ts // 1000, "ts": ts}
    fix = location.fix_valid and location.ts is not None
    if not fix or (location.lat == 0 and location.lon == 0):
        entry["fix"] = False
        return entry
    if crs != "wgs84":
        entry["crs"] = crs
    entry["lat"] = location.lat
    entry["lon"] = location.lon
    if location.satellites is not None:
        hdop = next(h for least, h in _HDOP if location.satellites >= least)
        entry["acc"] = hdop * UERE_M
    src = _source(location.status)
    if src is not None:
        entry["src"] = src
    entry["spd"] = round(location.speed_kmh * KMH_MS, 2)
    if location.course < 360:
        entry["hdg"] = location.course
    return entry


def alarm_events(alarm: int, previous: int | None) -> list[str]:
    """Event types for the alarm bits that came on since `previous` (None: all set)."""
    rising = alarm if previous is None else alarm & ~previous
    return [kind for bits, kind in EVENTS if rising & bits]


def _source(status: int) -> str | None:
    used = status & _ANY_CONSTELLATION
    if not used:
        return None
    # Several constellations, or GLONASS / Galileo alone: satellite positioning that is
    # neither GPS nor BeiDou alone, which spec 4.1 calls `mixed`.
    return next((name for bit, name in _CONSTELLATIONS if used == bit), "mixed")
