"""A simulated device: when it reports, what it says, and the events it raises.

A tag reports on a fixed interval (with a little clock jitter) and raises spec 4.1 events
when its strap is opened or cut, its battery runs low, it starts charging, or it powers off
and on. A phone runs OwnTracks in significant-move mode: it publishes when its wearer has
moved a couple of hundred metres, or after a ping interval, so its reports are irregular;
it never reports without a fix. What it sends is what its app sends: an iPhone -1 for a
speed or course it has not got; a phone's connection dies with it, so the broker
publishes its will (`lwt`) when it is switched off or its battery dies. A phone may run the
Traccar Client instead, deciding alike and posting each location over HTTP (the OsmAnd
protocol, spec 4.1b), with no broker connection and so no will.

Both obey the service's commands (alerts.pursuit, alerts.locate): a tag `set_interval` and
`locate`, a phone `reportLocation` and a switch to move mode (a fix every few seconds) and
back.

`DeviceSim.advance` is incremental (a live tag asks a chunk at a time) and deterministic
for a plan's seed; a recorded scenario asks for everything at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from geofence.crs import wgs84_to_gcj02
from ingest import topics
from simulators.geo import displacement
from simulators.gps import SOURCES, GpsModel, GpsProfile
from simulators.messages import (
    Message,
    Payload,
    evt,
    fix_entry,
    loc,
    osmand_location,
    owntracks_location,
    owntracks_lwt,
)
from simulators.route import Track
from simulators.uplink import LinkPlan

Window = tuple[int, int | None]  # (from, to) epoch ms; to None = for good


@dataclass(frozen=True)
class Battery:
    start_pct: float = 85.0
    drain_pct_h: float = 1.2  # a tag lasts ~3 days on a charge
    charging: tuple[tuple[int, int], ...] = ()  # plugged in
    charge_pct_h: float = 45.0
    low_pct: int = 20  # firmware raises low_battery here
    off_pct: float = 1.0  # and shuts down cleanly (power_off) here


@dataclass(frozen=True)
class DevicePlan:
    id: str
    track: Track
    kind: str = "tag"  # tag | phone
    owntracks: str | None = None  # "<user>/<device>" for a phone
    osmand: str | None = None  # instead: the id a Traccar Client phone sends, over HTTP
    jt808: str | None = None  # instead: a JT/T 808 terminal's number, over TCP (simulators.jt808)
    platform: str = "android"  # a phone's: ios | android, whose OwnTracks app it runs
    interval_s: float = 30.0  # tags; phones report on movement
    gps: GpsProfile = field(default_factory=GpsProfile)
    battery: Battery = field(default_factory=Battery)
    strap: tuple[tuple[int, str], ...] = ()  # (ts, ok|open|cut): the strap's state from ts
    off: tuple[Window, ...] = ()  # switched off: power_off, silence, boot
    silent: tuple[Window, ...] = ()  # says nothing, no event: destroyed, shielded, SIM pulled
    link: LinkPlan = field(default_factory=LinkPlan)
    crs: str = "wgs84"  # gcj02: the firmware reports Amap coordinates, and says so
    # Asked for a fix (reportLocation, locate, a check-in): answers this much later (the
    # owner notices late, the app was asleep) — or not at all within `ignores` (the phone
    # is not with them, the app was killed).
    answer_delay_s: float = 0.0
    ignores: tuple[Window, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class FleetPlan:
    """The devices and their plans, written from `start_ms` in plan time: what a scenario
    (simulators.demo) hands a live fleet (simulators.fleet) to play."""

    start_ms: int
    devices: tuple[DevicePlan, ...]


def _inside(t: int, windows: tuple[Window, ...]) -> bool:
    return any(a <= t and (b is None or t < b) for a, b in windows)


def _within(times: npt.NDArray[np.int64], windows: tuple[Window, ...]) -> list[bool]:
    mask = np.zeros(len(times), dtype=bool)
    for a, b in windows:
        mask |= (times >= a) & (times < (b if b is not None else 2**62))
    return mask.tolist()


def _strap_at(times: npt.NDArray[np.int64], changes: tuple[tuple[int, str], ...]) -> list[str]:
    ordered = sorted(changes)
    states = ["ok"] + [state for _, state in ordered]
    idx = np.searchsorted(np.array([ts for ts, _ in ordered], dtype=np.int64), times, "right")
    return [states[i] for i in idx.tolist()]


_STRAP_EVENT = {"open": "strap_open", "cut": "strap_cut"}
# The broker takes a client for dead after 1.5 keep-alives without a word (OwnTracks: 60 s).
_WILL_DELAY_MS = 90_000
_PHONE_GRID_MS = 15_000
_PHONE_MOVE_M = (150.0, 300.0)
_PHONE_PING_S = (300.0, 900.0)
# The Traccar Client's `event` for a report: its first on starting, its heartbeat.
_OSMAND_EVENT = {"u": "motionchange", "p": "heartbeat"}
# OwnTracks `monitoring` modes, and move mode's default seconds between fixes (Android's
# moveModeLocatorInterval).
SIGNIFICANT, MOVE = 1, 2
_MOVE_INTERVAL_MS = 10_000


class DeviceSim:
    def __init__(self, plan: DevicePlan, interval_s: float | None = None) -> None:
        self.plan = plan
        self.interval_ms = int((interval_s or plan.interval_s) * 1000)
        self.gps = GpsModel(plan.gps, plan.seed)
        self.rng = np.random.default_rng((plan.seed, 7))
        self.seq = 0
        self.clock = plan.track.start  # everything before this has been emitted
        self.next_report = plan.track.start
        self.batt = plan.battery.start_pct
        self.batt_t = plan.track.start
        self.dead = False
        self.was_charging = False
        self.low_sent = False
        self.connected_at = plan.track.start  # phone: its MQTT connection, for its will
        self.last_pub: tuple[int, float, float] | None = None  # phone: t, x, y
        self.next_move_m = 0.0
        self.next_ping_ms = 0
        self.monitoring = SIGNIFICANT  # phone
        self.move_interval_ms = _MOVE_INTERVAL_MS
        self.report_requested = False

    @property
    def topic(self) -> str:
        if self.plan.osmand is not None:
            return topics.OSMAND
        if self.plan.kind == "phone":
            return topics.owntracks(self.user_device)
        return topics.tag(self.plan.id, topics.LOC)

    @property
    def user_device(self) -> str:
        """A phone's OwnTracks "<user>/<device>"."""
        return self.plan.owntracks or f"u{self.plan.id}/{self.plan.id}"

    def set_interval(self, interval_s: float) -> None:
        """A tag told to report every `interval_s`: the next report comes that long after
        the last one, or at once if that time has passed."""
        interval_ms = int(interval_s * 1000)
        self.next_report = max(self.clock, self.next_report - self.interval_ms + interval_ms)
        self.interval_ms = interval_ms

    def set_monitoring(self, mode: int, interval_s: float | None = None) -> None:
        """A phone's OwnTracks monitoring mode: MOVE publishes every `interval_s` (or the
        last one given) wherever its wearer is, SIGNIFICANT only on movement or a ping."""
        if interval_s is not None:
            self.move_interval_ms = int(interval_s * 1000)
        if mode == MOVE and self.monitoring != MOVE:
            self.next_report = self.clock
        self.monitoring = mode

    def report_location(self) -> None:
        """Asked for its location (a phone's OwnTracks reportLocation, a tag's `locate`): it
        reports after the plan's `answer_delay_s` (at once by default), a tag then on its
        interval from there; within the plan's `ignores` it does nothing."""
        if _inside(self.clock, self.plan.ignores):
            return
        self.report_requested = self.plan.kind == "phone"
        self.next_report = self.clock + int(self.plan.answer_delay_s * 1000)

    def _candidates(self, until: int) -> np.ndarray:
        if self.plan.kind == "phone":
            first = self.next_report
            grid = self.move_interval_ms if self.monitoring == MOVE else _PHONE_GRID_MS
            times = np.arange(first, until, grid, dtype=np.int64)
            self.next_report = int(times[-1]) + grid if len(times) else first
            return times
        n = max(0, -(-(until - self.next_report) // self.interval_ms))
        times = self.next_report + self.interval_ms * np.arange(n, dtype=np.int64)
        self.next_report += n * self.interval_ms
        # A tag's clock jitters a little; never enough to swap two reports.
        jitter = self.rng.normal(0, min(300, self.interval_ms / 20), n).astype(np.int64)
        return times + jitter

    def _events_between(self, a: int, b: int) -> list[tuple[int, str]]:
        """Strap and power events with a ≤ ts < b, from the plan."""
        out = []
        for ts, state in self.plan.strap:
            if a <= ts < b and state in _STRAP_EVENT:
                out.append((ts, _STRAP_EVENT[state]))
        for start, end in self.plan.off:
            if a <= start < b:
                out.append((start, "power_off"))
            if end is not None and a <= end < b:
                out.append((end, "boot"))
        return out

    def _battery(self, t: int, charging: bool) -> list[tuple[int, str]]:
        """Advance the battery to `t`; the events that crossing raised."""
        b = self.plan.battery
        hours = (t - self.batt_t) / 3_600_000
        self.batt_t = t
        self.batt = (
            min(100.0, self.batt + hours * b.charge_pct_h)
            if charging
            else max(0.0, self.batt - hours * b.drain_pct_h)
        )
        events = []
        if charging and not self.was_charging:
            events.append((t, "charging"))
            self.low_sent = False
        self.was_charging = charging
        if self.dead and charging and self.batt >= 3:
            self.dead = False
            events.append((t, "boot"))
        if not self.dead and not charging:
            if self.batt <= b.low_pct and not self.low_sent:
                self.low_sent = True
                events.append((t, "low_battery"))
            if self.batt <= b.off_pct:
                self.dead = True
                events.append((t, "power_off"))
        return events

    def _phone_publishes(self, t: int, x: float, y: float) -> str | None:
        """OwnTracks' decision for one candidate instant (`x`, `y` metres in any fixed
        frame): None, or the trigger."""
        if self.report_requested:
            self.report_requested = False
            return "r"
        if self.last_pub is None:
            return "u"
        if self.monitoring == MOVE:
            return "t"
        t0, x0, y0 = self.last_pub
        if t - t0 >= self.next_ping_ms:
            return "p"
        if t - t0 >= 30_000 and math.hypot(x - x0, y - y0) >= self.next_move_m:
            return ""
        return None

    def _as_sent(self, payload: Payload) -> Payload:
        """An iPhone's app sends -1 for what CoreLocation has not got: speed and course on a
        wifi or cell fix, course when at rest (the OwnTracks recorder's demo recording);
        Android's leaves them out."""
        if self.plan.platform == "ios":
            payload.setdefault("vel", -1)
            payload.setdefault("cog", -1)
        return payload

    def _wills(self, events: list[tuple[int, str]]) -> list[Message]:
        """The broker's `lwt` for each time the phone went off; a boot connects afresh."""
        out = []
        for ts, kind in sorted(events):
            if kind == "boot":
                self.connected_at = ts
            elif kind == "power_off":
                tst = str(self.connected_at // 1000) if self.plan.platform == "ios" else None
                out.append(Message(ts + _WILL_DELAY_MS, self.topic, owntracks_lwt(tst)))
        return out

    def advance(self, until: int) -> list[Message]:
        """Every message the device emits with ts in [previous `until`, `until`)."""
        plan = self.plan
        start = self.clock
        self.clock = max(until, start)
        times = self._candidates(until)
        events = self._events_between(start, until)
        truth = plan.track.at(times)
        keep: list[int] = []
        triggers: list[str] = []
        batt: list[int] = []
        chg: list[bool] = []
        blocked = _within(times, plan.off + plan.silent)
        strap_now = _strap_at(times, plan.strap)
        # Phones decide on distance moved: metres from the track's start, in one go.
        east, north = displacement(plan.track.lat[0], plan.track.lon[0], truth.lat, truth.lon)
        xs, ys = east.tolist(), north.tolist()
        plugged = _within(times, self.plan.battery.charging)
        for i, t in enumerate(times.tolist()):
            events += self._battery(t, plugged[i])
            if self.dead or blocked[i]:
                continue
            if plan.kind == "phone":
                trigger = self._phone_publishes(t, xs[i], ys[i])
                if trigger is None:
                    continue
                self.last_pub = (t, xs[i], ys[i])
                self.next_move_m = float(self.rng.uniform(*_PHONE_MOVE_M))
                self.next_ping_ms = int(self.rng.uniform(*_PHONE_PING_S) * 1000)
                triggers.append(trigger)
            keep.append(i)
            batt.append(round(self.batt))
            chg.append(self.was_charging)
        idx = np.array(keep, dtype=np.int64)
        kept = times[idx]
        sample = plan.track.at(kept)
        readings = self.gps.observe(kept, sample)
        lat, lon = readings.lat, readings.lon
        if plan.crs == "gcj02":
            lat, lon = wgs84_to_gcj02(lat, lon)
        # Python values, rounded as devices send them, before the per-message loop.
        fix = readings.fix.tolist()
        ts_l = kept.tolist()
        lat_l = np.round(lat, 7 if plan.kind == "phone" else 6).tolist()
        lon_l = np.round(lon, 7 if plan.kind == "phone" else 6).tolist()
        acc_l = np.round(readings.acc, 1).tolist()
        spd_l = np.round(readings.spd, 1).tolist()
        hdg_l = np.round(readings.hdg).tolist()
        src_l = [SOURCES[k] if k >= 0 else None for k in readings.src.tolist()]
        out: list[Message] = []
        for k, ts in enumerate(ts_l):
            if plan.osmand is not None:
                if fix[k]:  # nor does the Traccar Client send anything without one
                    payload = osmand_location(
                        plan.osmand,
                        ts,
                        lat_l[k],
                        lon_l[k],
                        acc_l[k],
                        batt=batt[k],
                        charging=chg[k],
                        spd=spd_l[k],
                        hdg=hdg_l[k],
                        event=_OSMAND_EVENT.get(triggers[k], ""),
                    )
                    out.append(Message(ts, self.topic, payload))
                continue
            if plan.kind == "phone":
                if not fix[k]:
                    continue  # OwnTracks publishes nothing without a location
                payload = owntracks_location(
                    ts,
                    lat_l[k],
                    lon_l[k],
                    acc_l[k],
                    tid=plan.id[-2:],
                    batt=batt[k],
                    charging=chg[k],
                    spd=spd_l[k],
                    hdg=hdg_l[k],
                    trigger=triggers[k] or None,
                    wifi=src_l[k] == "wifi",
                    monitoring=self.monitoring,
                )
                out.append(Message(ts, self.topic, self._as_sent(payload), entry=True))
                continue
            entry = fix_entry(
                0,
                ts,
                lat_l[k] if fix[k] else None,
                lon_l[k] if fix[k] else None,
                acc=acc_l[k],
                src=src_l[k],
                spd=spd_l[k],
                hdg=hdg_l[k],
                batt=batt[k],
                chg=chg[k],
                strap=strap_now[keep[k]],
                crs=plan.crs,
            )
            out.append(Message(ts, self.topic, loc(entry), entry=True))
        if plan.kind == "tag":
            topic = topics.tag(plan.id, topics.EVT)
            out += [
                Message(ts, topic, evt(0, ts, kind))
                for ts, kind in events
                if not _inside(ts, plan.silent)
            ]
        elif plan.osmand is None:  # no broker connection, no will: the Traccar Client posts
            out += self._wills(events)
        out.sort(key=lambda m: m.ts)
        for m in out:
            if "seq" in m.payload:
                self.seq += 1
                m.payload["seq"] = self.seq
        return out
