"""Ground truth for a scenario: what really happened, which a perfect engine would report.

Breaches come from where the people truly were (their tracks, sampled every few seconds,
against the same zones, leaves and schedules the engine reads, through the engine's own
rule compiler so that both read the roster alike). Device faults come from what the
devices actually sent, as the broker received it.

Some episodes are real but no engine can be blamed either way for them; they are marked
`optional` and the scorer neither rewards nor punishes an alert on them:
- a breach shorter than `MIN_BREACH_MS` (cutting a corner of a county on a road);
- being outside both jurisdiction and destinations *during* an approved leave while on
  the road (through a third county: the spec's rule counts it, practice mostly does not);
  having stopped there for 15 minutes, or being there longer than the trip between the
  person's places plausibly takes, is a real breach from then on;
- silences, no-fix streaks and battery dips in the grey band between "normal" and
  "certainly a fault" (thresholds below; every engine policy must pick one);
- a person's two devices apart by more than `APART_M` but not by `SEPARATED_M` for
  `SEPARATED_MS` (a phone left in the car outside a shop): real only beyond both.
docs/scenarios.md states these rules for people writing engines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fencewatch.scenario import iso_to_ms
from geofence.model import Roster, Supervisee, ZoneDef
from geofence.ruleset import RuleSet
from ingest import topics
from simulators.route import Track
from simulators.uplink import Body, Ping

STEP_MS = 5_000
MIN_BREACH_MS = 5 * 60_000
MERGE_MS = 5 * 60_000  # an episode interrupted for less than this is one episode
# On leave, outside every allowed place, stopped within STOP_M for STOP_MS: a breach.
STOP_M = 200.0
STOP_MS = 15 * 60_000
M_PER_DEG = 111_195.0
LATE_MS = 5 * 60_000  # a fix that arrives this long after it was taken was buffered
# (none below, optional from, real from) in ms, per device kind
OFFLINE_MS = {"tag": (5 * 60_000, 30 * 60_000), "phone": (20 * 60_000, 120 * 60_000)}
NO_FIX_MS = (3 * 60_000, 30 * 60_000)
LOW_PCT = 20  # a battery episode starts here…
LOW_REAL_PCT = 10  # …and is certain once it falls this far
LOW_CLEAR_PCT = 25
# Device separation (人机分离): two devices of one person truly this far apart are an
# optional episode, which is real once they have been SEPARATED_M apart for SEPARATED_MS.
APART_M = 150.0
SEPARATED_M = 1000.0
SEPARATED_MS = 30 * 60_000

Truth = dict[str, Any]

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Record:
    """One message (or batch entry) as the broker delivered it, first arrival only."""

    at: int
    ts: int
    fix: bool | None = None  # None for an event
    batt: int | None = None
    chg: bool | None = None
    strap: str | None = None
    event: str | None = None


def _event(
    kind: str,
    person: str,
    device: str,
    start: int,
    end: int | None,
    *,
    optional: bool = False,
    late: bool = False,
) -> Truth:
    out: Truth = {"type": kind, "supervisee": person, "device": device, "start": start, "end": end}
    if optional:
        out["optional"] = True
    if late:
        out["late"] = True
    return out


def _edges(mask: BoolArray) -> list[tuple[int, int]]:
    """(first, one past the last) sample index of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _runs(mask: BoolArray, times: npt.NDArray[np.int64]) -> list[tuple[int, int | None]]:
    """(start, end) of each run of True; end None when it runs to the last sample."""
    runs: list[tuple[int, int | None]] = []
    for a, b in _edges(mask):
        start = int(times[a])
        end = int(times[b]) if b < len(times) else None
        if runs and runs[-1][1] is not None and start - int(runs[-1][1]) < MERGE_MS:
            start = runs.pop()[0]
        runs.append((start, end))
    return runs


def _duration(start: int, end: int | None, clock_end: int) -> int:
    return (clock_end if end is None else end) - start


def _records(topic: topics.Topic, payload: Body, at: int) -> list[Record]:
    if isinstance(payload, list):  # an OwnTracks phone's array
        return [r for msg in payload for r in _records(topic, msg, at)]
    if topic.protocol == topics.OWNTRACKS:
        return [_owntracks_record(payload, at)]
    if topic.protocol == topics.OSMAND:
        return [_osmand_record(payload, at)]
    if topic.kind == topics.EVT:
        return [Record(at, payload["ts"], event=payload["type"])]
    return [
        Record(at, e["ts"], e.get("fix", True), e.get("batt"), e.get("chg"), e.get("strap"))
        for e in payload.get("batch", [payload])
    ]


def _osmand_record(body: dict[str, Any], at: int) -> Record:
    """The Traccar Client's JSON body (simulators.messages.osmand_location)."""
    location, battery = body["location"], body["location"]["battery"]
    batt = None if battery["level"] < 0 else round(battery["level"] * 100)
    ts = iso_to_ms(location["timestamp"], "timestamp")
    return Record(at, ts, True, batt, battery["is_charging"])


def _owntracks_record(msg: dict[str, Any], at: int) -> Record:
    if msg["_type"] != "location":
        return Record(at, at, event=msg["_type"])  # an lwt: the broker's, on arrival
    batt = msg.get("batt")
    available = None if batt == -1 else batt
    return Record(at, msg["tst"] * 1000, True, available, msg.get("bs") in (2, 3))


def device_records(
    pings: Iterable[Ping], owntracks: Mapping[str, str], osmand: Mapping[str, str]
) -> dict[str, list[Record]]:
    """Per device, what it sent, once, in device-time order (our own payloads: the scenario
    writer's output, read back without the engine's decoder)."""
    seen: set[tuple[str, str, int]] = set()
    out: dict[str, list[Record]] = defaultdict(list)
    for p in pings:
        named = topics.parse(p.topic)
        if named is None:
            raise ValueError(f"not a device topic: {p.topic[:120]!r}")
        if named.protocol == topics.OWNTRACKS:
            device = owntracks[named.device]
        elif named.protocol == topics.OSMAND and isinstance(p.payload, dict):
            device = osmand[p.payload["device_id"]]
        else:
            device = named.device
        for r in _records(named, p.payload, p.at):
            key = (device, r.event or "", r.ts)
            if key not in seen:
                seen.add(key)
                out[device].append(r)
    for records in out.values():
        records.sort(key=lambda r: r.ts)
    return out


class TruthBuilder:
    def __init__(self, roster: Roster, zones: list[ZoneDef], start: int, end: int) -> None:
        self.rules = RuleSet(roster, zones)
        self.start, self.end = start, end
        self.times = np.arange(start, end + 1, STEP_MS, dtype=np.int64)

    def _inside(self, zone_ids: tuple[str, ...], lat: Any, lon: Any) -> BoolArray:
        area = self.rules.area(zone_ids)
        return np.asarray(area.classify(lat, lon, np.zeros(len(lat))) > 0)

    def _active(self, zone_id: str) -> BoolArray:
        """Whether the zone's schedule is in force at each sample (worked out per minute,
        the schedules' resolution)."""
        zone = self.rules.zones[zone_id]
        minutes, index = np.unique(self.times // 60_000, return_inverse=True)
        active = np.array([self.rules.zone_active(zone, int(m) * 60_000) for m in minutes])
        return np.asarray(active[index], dtype=bool)

    def _stopped(self, lat: Any, lon: Any, where: BoolArray) -> BoolArray:
        """At each sample (of those in `where`): has the person been within `STOP_M` of
        where they stopped for `STOP_MS`? Stopped outside every allowed place during a
        leave is not being on the road: a breach (docs/rules.md, leave)."""
        out = np.zeros(len(lat), dtype=bool)
        y = np.asarray(lat) * M_PER_DEG
        x = np.asarray(lon) * M_PER_DEG * np.cos(np.radians(np.asarray(lat)))
        anchor = -1
        for i in np.flatnonzero(where).tolist():
            if (
                anchor < 0
                or not where[i - 1]
                or np.hypot(x[i] - x[anchor], y[i] - y[anchor]) > STOP_M
            ):
                anchor = i
            out[i] = self.times[i] - self.times[anchor] >= STOP_MS
        return out

    def _away_on_leave(
        self,
        person: str,
        device: str,
        away: BoolArray,
        off_route: BoolArray,
        records: list[Record],
    ) -> list[Truth]:
        """Each stretch outside every allowed place during a leave is one episode: optional
        while it is the road, real from the moment the person stopped or overstayed. An
        engine may see that moment a little sooner or later than the true track does (its
        own fixes, its own threshold), so an alert anywhere in the stretch is that episode's
        (`earliest`), and its delay counts from the moment."""
        out: list[Truth] = []
        for a, b in _edges(away):
            start, end = int(self.times[a]), int(self.times[b]) if b < len(self.times) else None
            real = np.flatnonzero(off_route[a:b])
            late = _late(records, start, end)
            if real.size:
                event = _event(
                    "jurisdiction_exit",
                    person,
                    device,
                    int(self.times[a + real[0]]),
                    end,
                    late=late,
                )
                event["earliest"] = start
            else:
                event = _event(
                    "jurisdiction_exit", person, device, start, end, optional=True, late=late
                )
            out.append(event)
        return out

    def _overlong(self, away: BoolArray, trip_ms: int) -> BoolArray:
        """Samples of each run of `away` that come after the trip between the person's
        places should have been over."""
        out = np.zeros(len(away), dtype=bool)
        for a, b in _edges(away):
            out[a + trip_ms // STEP_MS : b] = True
        return out

    def breaches(self, person: Supervisee, track: Track, records: list[Record]) -> list[Truth]:
        where = track.at(self.times)
        lat, lon = where.lat, where.lon
        device = person.devices[0].id
        out: list[Truth] = []

        def add(kind: str, mask: BoolArray, optional: bool = False) -> None:
            for start, end in _runs(mask, self.times):
                short = _duration(start, end, self.end) < MIN_BREACH_MS
                late = _late(records, start, end)
                out.append(
                    _event(
                        kind, person.id, device, start, end, optional=optional or short, late=late
                    )
                )

        if person.jurisdiction:
            in_j = self._inside(person.jurisdiction, lat, lon)
            on_leave = np.zeros(len(lat), dtype=bool)
            policy = self.rules.policy(device)
            for leave in person.leaves:
                window = (self.times >= leave.start) & (self.times < leave.end)
                on_leave |= window
                if not window.any():
                    continue
                away = window & ~in_j
                if leave.destinations:
                    away &= ~self._inside(leave.destinations, lat, lon)
                trip_ms = self.rules.trip_s(person, leave, policy) * 1000
                off_route = self._overlong(away, trip_ms) | self._stopped(lat, lon, away)
                out += self._away_on_leave(person.id, device, away, off_route, records)
            add("jurisdiction_exit", ~in_j & ~on_leave)
        for zone_id in person.exclusion:
            add("exclusion_enter", self._inside((zone_id,), lat, lon) & self._active(zone_id))
        if person.home:
            add(
                "curfew_breach", ~self._inside((person.home,), lat, lon) & self._active(person.home)
            )
        return out

    def faults(self, person: Supervisee, records: Mapping[str, list[Record]]) -> list[Truth]:
        out: list[Truth] = []
        for ref in person.devices:
            recs = records.get(ref.id, [])
            out += self._offline(person.id, ref.id, recs)
            if ref.kind == "tag":
                out += self._no_fix(person.id, ref.id, recs)
                out += self._strap(person.id, ref.id, recs)
            out += self._battery(person.id, ref.id, recs)
        return out

    def separations(self, person: Supervisee, tracks: Mapping[str, Track]) -> list[Truth]:
        """Each stretch of a person's first two devices truly more than APART_M apart is one
        episode, named after the phone (the tag is fitted): real when they were more than
        SEPARATED_M apart for SEPARATED_MS of it, from the moment they were that far apart
        (`earliest`: the stretch's start, where an engine may already see it)."""
        devices = [d for d in person.devices if d.id in tracks][:2]
        if len(devices) < 2:
            return []
        a, b = (tracks[d.id].at(self.times) for d in devices)
        lat = np.radians((a.lat + b.lat) / 2)
        dy = (a.lat - b.lat) * M_PER_DEG
        dx = (a.lon - b.lon) * M_PER_DEG * np.cos(lat)
        distance = np.hypot(dx, dy)
        named = next((d.id for d in devices if d.kind == "phone"), devices[1].id)
        out = []
        for first, past in _edges(distance > APART_M):
            start = int(self.times[first])
            end = int(self.times[past]) if past < len(self.times) else None
            far = np.flatnonzero(distance[first:past] > SEPARATED_M)
            if far.size * STEP_MS >= SEPARATED_MS:
                event = _event(
                    "device_separation", person.id, named, int(self.times[first + far[0]]), end
                )
                event["earliest"] = start
            else:
                event = _event("device_separation", person.id, named, start, end, optional=True)
            out.append(event)
        return out

    def _offline(self, person: str, device: str, recs: list[Record]) -> list[Truth]:
        low, high = OFFLINE_MS[self.rules.device_kind.get(device, "tag")]
        arrivals = sorted(r.at for r in recs)
        out = []
        for a, b in zip(arrivals, [*arrivals[1:], None], strict=True):
            silence = (self.end if b is None else b) - a
            if silence >= low:
                out.append(_event("device_offline", person, device, a, b, optional=silence < high))
        return out

    def _no_fix(self, person: str, device: str, recs: list[Record]) -> list[Truth]:
        fixes = [r for r in recs if r.fix is not None]
        out = []
        k = 0
        while k < len(fixes):
            if fixes[k].fix:
                k += 1
                continue
            first = k
            while k < len(fixes) and not fixes[k].fix:
                k += 1
            start = fixes[first].ts
            end = fixes[k].ts if k < len(fixes) else None
            span = (end if end is not None else fixes[k - 1].ts) - start
            if span >= NO_FIX_MS[0]:
                late = fixes[first].at - start > LATE_MS
                optional = span < NO_FIX_MS[1]
                out.append(
                    _event("no_fix", person, device, start, end, optional=optional, late=late)
                )
        return out

    def _battery(self, person: str, device: str, recs: list[Record]) -> list[Truth]:
        out = []
        start: int | None = None
        lowest = 100
        first_at = 0
        for r in recs:
            charging = bool(r.chg) or r.event == "charging"
            if start is None:
                if r.event == "low_battery" or (
                    r.batt is not None and r.batt <= LOW_PCT and not charging
                ):
                    start, lowest, first_at = r.ts, r.batt or LOW_PCT, r.at
                continue
            if r.batt is not None:
                lowest = min(lowest, r.batt)
            if charging or (r.batt is not None and r.batt > LOW_CLEAR_PCT):
                out.append(self._low(person, device, start, r.ts, lowest, first_at))
                start = None
        if start is not None:
            out.append(self._low(person, device, start, None, lowest, first_at))
        return out

    def _low(
        self, person: str, device: str, start: int, end: int | None, lowest: int, first_at: int
    ) -> Truth:
        return _event(
            "low_battery",
            person,
            device,
            start,
            end,
            optional=lowest > LOW_REAL_PCT,
            late=first_at - start > LATE_MS,
        )

    def _strap(self, person: str, device: str, recs: list[Record]) -> list[Truth]:
        out = []
        start: int | None = None
        first_at = 0
        for r in recs:
            tampered = r.strap in ("open", "cut") or r.event in ("strap_open", "strap_cut")
            restored = r.strap == "ok"
            if start is None and tampered:
                start, first_at = r.ts, r.at
            elif start is not None and restored:
                out.append(
                    _event(
                        "strap_tamper", person, device, start, r.ts, late=first_at - start > LATE_MS
                    )
                )
                start = None
        if start is not None:
            out.append(
                _event("strap_tamper", person, device, start, None, late=first_at - start > LATE_MS)
            )
        return out


def _late(records: list[Record], start: int, end: int | None) -> bool:
    """A breach is late-detectable when nothing live was heard from the person's device in
    its first minutes: every fix taken then reached the broker only later, in a batch."""
    until = start + 10 * 60_000 if end is None else min(end, start + 10 * 60_000)
    window = [r for r in records if r.fix and start <= r.ts <= until]
    return bool(window) and all(r.at - r.ts > LATE_MS for r in window)


def ground_truth(
    roster: Roster,
    zones: list[ZoneDef],
    tracks: Mapping[str, Track],
    pings: list[Ping],
    start: int,
    end: int,
    device_tracks: Mapping[str, Track] | None = None,
) -> list[Truth]:
    """Every real (and optional) breach, separation and fault of every supervisee, by
    start time. `tracks` are the people's true paths, `device_tracks` the devices' (a
    device left behind has its own)."""
    builder = TruthBuilder(roster, zones, start, end)
    records = device_records(pings, builder.rules.owntracks, builder.rules.osmand)
    out: list[Truth] = []
    for person in roster.supervisees:
        primary = records.get(person.devices[0].id, []) if person.devices else []
        out += builder.breaches(person, tracks[person.id], primary)
        out += builder.faults(person, records)
        out += builder.separations(person, device_tracks or {})
    out.sort(key=lambda e: (e["start"], e["supervisee"], e["type"]))
    return out
