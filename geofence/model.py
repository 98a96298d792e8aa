"""The domain objects the engine reasons about.

Everything here is plain data: the ingest edge builds `Fix` and `DeviceEvent` from
device messages, the storage edge (or a replay scenario) builds `Roster` and `ZoneDef`,
and the engine turns them into `Verdict`s. Times are epoch milliseconds UTC; coordinates
are WGS-84 once they reach this module (conversion happens at the edges, once).
"""

from __future__ import annotations

import msgspec


class Quality:
    """Why a stored fix was trusted less or skipped; persisted as a bitmask with the fix.
    Plain ints, not an IntFlag: enum arithmetic costs an object per operation, and these
    are tested and set several times for every fix."""

    NO_FIX = 1  # device reported without a position
    ACC_UNKNOWN = 2  # no accuracy radius: treated as poor
    ACC_POOR = 4  # accuracy radius above the policy's limit: judged uncertain
    JUMP = 8  # implausible speed from the last trusted fix (multipath, cell hop)
    LATE = 16  # reached the broker long after it was taken (buffered upload)
    OUT_OF_ORDER = 32  # older than a fix already judged for this device
    GCJ02 = 64  # arrived in GCJ-02 and was converted
    DUPLICATE = 128  # same device, seq and time as a fix already judged
    DRIFT = 256  # far from where a device that says it is still has been resting

    @classmethod
    def names(cls, mask: int) -> list[str]:
        return [name for name, bit in vars(cls).items() if isinstance(bit, int) and bit & mask]


class Fix(msgspec.Struct, frozen=True, gc=False):
    """One decoded, validated position report (spec 4.1), in WGS-84."""

    device: str
    seq: int
    ts: int  # device time of the fix, epoch ms
    at: int  # when it reached the broker / service, epoch ms
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    src: str | None = None
    spd: float | None = None
    hdg: float | None = None
    batt: int | None = None
    chg: bool | None = None
    strap: str | None = None
    gcj02: bool = False  # converted from GCJ-02 at the edge

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None


class DeviceEvent(msgspec.Struct, frozen=True, gc=False):
    """A device event from `em/<device>/evt` (spec 4.1)."""

    device: str
    seq: int
    ts: int
    at: int
    type: str  # strap_open | strap_cut | power_off | low_battery | charging | sos | boot


class Window(msgspec.Struct, frozen=True):
    """A weekly time window in the roster's time zone; `days` are ISO weekdays (1 = Monday)
    on which the window *starts*, so 22:00–06:00 on day 5 runs into Saturday morning."""

    days: tuple[int, ...]
    start_min: int  # minutes after local midnight
    end_min: int  # may be <= start_min: the window runs past midnight


class ZoneDef(msgspec.Struct, frozen=True):
    """A zone as stored: WGS-84 GeoJSON geometry (already converted from its source CRS)."""

    id: str
    kind: str  # jurisdiction | exclusion | home
    geometry: dict  # GeoJSON geometry, WGS-84
    name: str = ""
    source_crs: str = "wgs84"
    schedule: tuple[Window, ...] = ()
    radius_m: float | None = None  # for a circle given as a Point


class Leave(msgspec.Struct, frozen=True):
    """Approved leave (外出): destinations join the allowed area from start to end. A
    recurring permit (经常性跨市县活动) is a leave with a weekly `schedule`: its places are
    allowed only in those hours."""

    start: int
    end: int
    destinations: tuple[str, ...] = ()
    id: str = ""
    returned_at: int | None = None  # 销假: the person reported back
    schedule: tuple[Window, ...] = ()


class DeviceRef(msgspec.Struct, frozen=True):
    id: str
    kind: str = "tag"  # tag | phone
    owntracks: str | None = None  # "<user>/<device>" for an OwnTracks phone
    osmand: str | None = None  # the id an OsmAnd (Traccar Client) phone sends
    jt808: str | None = None  # a JT/T 808 terminal's phone number, leading zeros dropped
    crs: str = "wgs84"  # what its positions are in, where the protocol does not say (JT/T 808)


class Place(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A place drawn as a circle where no zone is: `radius_m` metres around (lat, lon),
    WGS-84."""

    lat: float
    lon: float
    radius_m: float = 100.0
    name: str = ""


class Supervisee(msgspec.Struct, frozen=True):
    id: str
    jurisdiction: tuple[str, ...] = ()
    exclusion: tuple[str, ...] = ()
    home: str | None = None
    # Where the person works (工作单位): a zone id or a place. Co-workers there are no
    # gathering, as people at their homes are not (docs/rules.md).
    workplace: str | Place | None = None
    devices: tuple[DeviceRef, ...] = ()
    leaves: tuple[Leave, ...] = ()
    level: str = "normal"  # strict | normal | lenient (严管/普管/宽管)
    name: str = ""
    office: str | None = None


class Heightened(msgspec.Struct, frozen=True):
    """A heightened period (重大节假日、重要会议期间): stricter policy from start to end."""

    start: int
    end: int
    name: str = ""
    policy: dict = {}  # Policy fields to override, e.g. {"confirm_fixes": 2}
    # The offices whose people it applies to (from the database, with every office below
    # the ones named); empty: everyone.
    offices: frozenset[str] = frozenset()


class NoContact(msgspec.Struct, frozen=True):
    """A no-contact order (禁止接触): every two of `people` (supervisees) must stay at least
    `distance_m` apart."""

    id: str
    people: tuple[str, ...]
    distance_m: float = 200.0
    confirm_s: int = 300  # how long they must surely be within it (docs/rules.md)


class Protection(msgspec.Struct, frozen=True):
    """A protected person (被保护人) under a no-contact order: their phone, registered to the
    order and never a supervisee's, is a moving exclusion zone of `distance_m` around them
    for `supervisee`."""

    id: str
    supervisee: str
    device: DeviceRef  # a phone: OwnTracks or OsmAnd
    distance_m: float = 500.0
    confirm_s: int = 60
    sms: str | None = None  # the protected person's number, warned at once (live service)

    @property
    def person(self) -> str:
        """Their key among the watcher's people: never a supervisee id."""
        return f"protected:{self.id}"


class Gathering(msgspec.Struct, frozen=True):
    """The gathering rule (聚集): `size` or more supervisees surely within `radius_m` of
    each other for `hold_s`, away from their homes and workplaces."""

    size: int = 3
    radius_m: float = 100.0
    hold_s: int = 1200


class Roster(msgspec.Struct):
    timezone: str = "Asia/Shanghai"
    supervisees: list[Supervisee] = []
    heightened: list[Heightened] = []
    no_contact: list[NoContact] = []
    gathering: Gathering | None = None  # None: gatherings are not watched
    protected: list[Protection] = []


class Verdict(msgspec.Struct, frozen=True):
    """What the engine concluded. `action` is raise (a new alert), clear (the condition
    that raised `key` ended; the alert stays open until a person resolves it), reopen
    (the condition came back soon after: the same breach, not a new alert), extend (late
    fixes show the breach began earlier, at `detail["start"]`: the same alert), join (more
    people confirmed at an open gathering, `detail["joined"]`: the same alert), or pursue /
    relax (not alerts: ask the device to report every `detail["interval_s"]` seconds while
    a breach is pending or open, then restore its interval)."""

    action: str  # raise | clear | reopen | extend | join | pursue | relax
    type: str  # jurisdiction_exit | exclusion_enter | curfew_breach | device_offline | ...
    supervisee: str
    device: str
    ts: int  # device time of the fix that confirmed it (clock time for watchdogs)
    key: str  # stable identity of the breach episode: the alert's dedup key
    late: bool = False
    detail: dict = {}


# The alert types of the area rules: while one of a person's is open, the map shows the
# person in breach (alerts.feed, and the latest positions the API reads).
GEOFENCE_RULES = ("jurisdiction_exit", "exclusion_enter", "curfew_breach")
# Otherwise the map shows the zone state of the person's latest fix (geofence.engine
# zone_state) in these words.
MAP_STATES = {"in": "ok", "uncertain": "uncertain", "out": "outside"}
