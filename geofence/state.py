"""Per-device and per-person state the rules fold over. Plain msgspec structs, so the
whole engine state snapshots to bytes (write-behind) and restores after a restart.

They are untracked by the garbage collector (`gc=False`: they never form cycles), so a
100,000-tag engine's state is not walked at every full collection, and a device costs no
more than its fields (docs/benchmarks.md, fifth round)."""

from __future__ import annotations

import msgspec

from geofence.confirm import Confirm
from geofence.model import Fix

# The exclusion zones of a track in none of their breaches, shared by every such track (most
# of them) instead of an empty dict each (6.4 MB at 100,000 tags): never written to, a track
# gets its own at its first pending breach (geofence.stages.exclusion).
NO_EXCLUSION: dict[str, Confirm] = {}

# A fix as the jump filter remembers it: lat, lon, error radius (m), ts, speed (m/s; -1 unknown).
Point = tuple[float, float, float, int, float]


class Track(msgspec.Struct, gc=False):
    """What one device's fixes have shown so far, in device-time order.

    A device has a live track and, when a batch arrives older than what the live track has
    already judged (a buffered upload that came after live fixes resumed), a late track
    for that batch, so each is still judged in device-time order."""

    last_ts: int = -1
    max_seq: int = -1
    seen: int = 0  # bit i set: seq max_seq - i already judged (QoS 1 redelivery guard)
    anchor: Point | None = None  # the last trusted fix
    suspect: Point | None = None  # the last fix rejected as a jump
    # Metres the speed readings from the anchor up to the suspect allow (geofence.stages.jump).
    reach: float = 0.0
    rest: tuple[float, float, int] | None = None  # where a still device rests (lat, lon, ts)
    speed_seen: bool = False  # the device has reported motion: its zero speed means still
    drift_since: int | None = None
    stirring: bool = False  # the last fix's speed was above still, below a clear pace
    jurisdiction: Confirm = msgspec.field(default_factory=Confirm)
    travel_since: int | None = None  # leave: outside every allowed place since
    stop: tuple[float, float, float, int] | None = None  # leave: stopped at (lat, lon, r, since)
    exclusion: dict[str, Confirm] = msgspec.field(default_factory=lambda: NO_EXCLUSION)
    curfew: Confirm = msgspec.field(default_factory=Confirm)
    no_fix_since: int | None = None
    no_fix_alerted: bool = False
    battery_low: bool = False
    strap_open: bool = False
    pursuing: bool = False  # the device has been asked to report faster

    def __post_init__(self) -> None:
        # Also after decoding (a snapshot restored, a state kept aside): its {} is one each.
        if not self.exclusion:
            self.exclusion = NO_EXCLUSION


class DeviceState(msgspec.Struct, gc=False):
    live: Track = msgspec.field(default_factory=Track)
    late: Track | None = None
    # The fixes judged on the late track, in device-time order: a fix older than the late
    # track's newest rebuilds it from these, so any arrival order is judged in time order.
    # None without a late track (most devices, most of the time).
    late_fixes: list[Fix] | None = None
    late_open: bool = False  # an episode a late track opened is still open
    last_at: int = 0  # arrival time of the newest message: the offline clock
    offline: bool = False
    power_off_at: int | None = None
    lost_at: int | None = None  # the broker published the device's will (lwt)


class Episode(msgspec.Struct, array_like=True, gc=False):
    """One breach of one rule by one person: the unit that becomes one alert."""

    key: str
    start: int
    end: int | None
    device: str
    inside_before: int = -1  # the opening track's last trusted fix on the right side
    late: bool = False  # opened by a late track (out-of-order fixes)


class PersonState(msgspec.Struct, gc=False):
    # rule ("jurisdiction_exit", "exclusion_enter:<zone>", ...) → recent episodes, newest last
    episodes: dict[str, list[Episode]] = msgspec.field(default_factory=dict)
    # rule → start of a late track's unconfirmed violating streak (StepContext.streak)
    late_streaks: dict[str, int] = msgspec.field(default_factory=dict)
    # Device separation (人机分离, geofence.stages.separation): each device's last few
    # trusted live fixes; from when to when its devices were surely apart; the device an
    # open separation alert names.
    seen: dict[str, list[Point]] = msgspec.field(default_factory=dict)
    apart: tuple[int, int] | None = None
    separated: str | None = None


class EngineState(msgspec.Struct):
    devices: dict[str, DeviceState] = msgspec.field(default_factory=dict)
    people: dict[str, PersonState] = msgspec.field(default_factory=dict)
