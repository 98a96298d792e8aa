"""Thresholds the rules use, per supervision level and device kind.

The reasoning behind each default is in docs/rules.md; every figure is configurable.
"""

from __future__ import annotations

import msgspec


class Policy(msgspec.Struct, frozen=True):
    # Confirmation: a breach needs this many fixes whose whole error circle is on the wrong
    # side, with no trustworthy fix on the right side between them, spanning this long.
    confirm_fixes: int = 3
    confirm_s: int = 60
    # …or evidence weighed by depth (how many error radii beyond the border each fix's
    # centre lies, at most `evidence_cap` a fix) reaching `confirm_evidence` over two or
    # more fixes spanning `confirm_fast_s`: a clear exit confirms in two fixes, while
    # drift, which hugs the border, still needs the three.
    confirm_evidence: float = 4.0
    evidence_cap: float = 3.0
    confirm_fast_s: int = 20
    # …or, for devices that report rarely (phones), two such fixes this far apart.
    confirm_dwell_s: int = 300
    # A breach of the same rule starting again this soon after one ended is the same breach
    # (a road that clips the border in and out): reopened, not raised again.
    reopen_s: int = 300
    # Hysteresis: this many trustworthy fixes on the right side end a breach.
    clear_fixes: int = 2
    # A fix on the right side only counts (to reset or clear) when its radius is this small
    # or its whole circle is on the right side.
    trust_acc_m: float = 100.0
    # Even wholly on the right side, a circle wider than this proves nothing: a phone's
    # network fix can be kilometres off, further than its `acc` admits.
    trust_max_m: float = 1000.0
    # Error circle radius = max(acc, floor for its source) × factor for its source. Devices
    # report a ~68% radius (one sigma): twice that holds ~99% of honest errors, and costs a
    # person really walking out with a good GPS fix only a few seconds.
    acc_unknown_m: float = 300.0
    acc_factor_default: float = 2.0
    acc_floor_m: dict[str, float] = msgspec.field(
        default_factory=lambda: {"cell": 1500.0, "wifi": 30.0}
    )
    acc_factor: dict[str, float] = msgspec.field(default_factory=lambda: {"cell": 2.0, "wifi": 2.0})
    acc_max_m: float = 5000.0  # beyond this a fix says nothing about position
    # A fix that does not name its source (OwnTracks, OsmAnd) but is this coarse is a
    # network position from the cell towers, and is judged as one (floor and factor).
    coarse_acc_m: float = 500.0
    # Jump filter: faster than this from the last trusted fix is a multipath/cell jump.
    max_speed_mps: float = 100.0
    # …and for a device that reports Doppler speeds, a leap its speeds deny stays a jump,
    # however often repeated, until its last trusted fix is this old.
    jump_recover_s: int = 300
    # Drift: a device whose Doppler speed says it is still, yet whose fix lies far from
    # where it has been resting, is showing indoor drift or multipath, not a walk. Speeds
    # below `still_mps` mean still; `drift_m` is how far from the resting point counts;
    # the resting point follows still fixes with time constant `rest_tau_s`, and is reset
    # by motion, by a gap of `rest_gap_s` or after `drift_max_s` of seeming drift.
    still_mps: float = 0.5
    moving_mps: float = 1.0  # one reading this fast is motion; between the two, two in a row
    drift_m: float = 100.0
    rest_tau_s: int = 1200
    rest_gap_s: int = 600
    drift_max_s: int = 1200
    # A fix that reached us this long after it was taken was buffered: a breach it reveals
    # is reported as late.
    late_after_s: int = 300
    # Device faults.
    offline_s: int = 900
    power_off_grace_s: int = 120
    # An OwnTracks phone's will (lwt): its connection died. iOS drops the connection after
    # every background publish, so a will alone is no alarm: only silence this long after.
    connection_lost_grace_s: int = 1200
    no_fix_s: int = 600
    low_battery_pct: int = 20
    battery_clear_pct: int = 30
    # Leave: outside both jurisdiction and destinations is tolerated only while travelling:
    # for at most the plausible trip between them (straight-line distance × `trip_detour`
    # at `trip_speed_mps`, plus `trip_margin_s`, never more than `leave_travel_s`), and
    # never stopped for more than `leave_dwell_s` within `stop_radius_m` of one place.
    leave_travel_s: int = 3 * 3600
    trip_speed_mps: float = 12.0
    trip_detour: float = 1.5
    trip_margin_s: int = 1800
    leave_dwell_s: int = 900
    stop_radius_m: float = 200.0
    # Pursuit: while a breach is pending or open the device is asked to report this often.
    pursuit_interval_s: int = 15
    # Device separation (人机分离): two devices of one person whose fixes, taken within
    # `separation_pair_s` of each other, lie further apart than both error circles, the
    # way the person could have gone in between (at their reported speeds, or at
    # `separation_speed_mps` when one is unknown) and `separation_m` more, for
    # `separation_s` with no sign of them together, no two such pairs more than
    # `separation_gap_s` apart (a still phone in significant-move mode pings every 5–15
    # minutes).
    separation_s: int = 1200
    separation_gap_s: int = 1200
    separation_m: float = 100.0
    separation_pair_s: int = 120
    separation_speed_mps: float = 15.0


class PolicyBook(msgspec.Struct, frozen=True):
    """Policies by (level, device kind), with per-date heightened periods."""

    default: Policy = Policy()
    by_level: dict[str, Policy] = {}
    by_kind: dict[str, dict[str, int | float]] = {}

    def for_device(self, level: str, kind: str) -> Policy:
        base = self.by_level.get(level, self.default)
        overrides = self.by_kind.get(kind)
        return msgspec.structs.replace(base, **overrides) if overrides else base


DEFAULT_BOOK = PolicyBook(
    by_level={
        # 严管: confirm faster, lose contact sooner.
        "strict": Policy(confirm_fixes=3, confirm_s=45, offline_s=600, no_fix_s=480),
        "normal": Policy(),
        # 宽管: same breach rules (the law is the same), more patience with faults.
        "lenient": Policy(offline_s=1800, no_fix_s=1200),
    },
    # Phones report irregularly and are switched off more; tags are fitted and must report.
    # A still phone in significant-move mode pings only every 5–15 minutes, so its resting
    # point must outlast two such gaps, or drift guard never holds for it.
    by_kind={"phone": {"offline_s": 3600, "no_fix_s": 1800, "rest_gap_s": 1800}},
)
