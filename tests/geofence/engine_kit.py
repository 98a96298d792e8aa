"""Builders for the engine's unit tests: judged fixes near 丽水 set in metres, zones as
`ZoneDef`s, and a `Lane` that runs chosen stages over one device's track the way
geofence.pipeline does, so each test reads as the fixes an officer's screen would follow.

(No package here: `tests/geofence/__init__.py` would shadow the real `geofence`.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from geofence.context import StepContext
from geofence.judge import Judged, error_radius
from geofence.model import Fix, Verdict, Window, ZoneDef
from geofence.policy import Policy
from geofence.state import EngineState, Track
from tests.kit import LIANDU_SEAT, T0, offset, square_m

POLICY = Policy()
PERSON, DEVICE = "S1", "T1"
# Where the test zones and fixes are: the 莲都 city seat.
CENTRE = LIANDU_SEAT
EVERY_DAY = (1, 2, 3, 4, 5, 6, 7)

Stage = Callable[[StepContext, Track, Judged], bool]


def ms(t_s: float) -> int:
    """Device time `t_s` seconds after the tests' epoch T0 (a Thursday, 18:40 in Shanghai)."""
    return T0 + int(t_s * 1000)


def point(east_m: float = 0.0, north_m: float = 0.0) -> tuple[float, float]:
    """(lat, lon) this far from CENTRE."""
    return offset(CENTRE, east_m, north_m)


def fix(
    t_s: float,
    *,
    east: float = 0.0,
    north: float = 0.0,
    position: bool = True,
    device: str = DEVICE,
    seq: int = 1,
    delay_s: float = 1.0,
    **fields: Any,
) -> Fix:
    """A fix taken at `t_s`, `east`/`north` metres from CENTRE (no position if not
    `position`), reaching us `delay_s` later; `fields` are Fix's own (acc, src, spd, batt…)."""
    fields.setdefault("acc", 8.0)
    lat, lon = point(east, north) if position else (None, None)
    return Fix(device, seq, ms(t_s), ms(t_s + delay_s), lat, lon, **fields)


def judged(
    t_s: float,
    *,
    east: float = 0.0,
    north: float = 0.0,
    position: bool = True,
    policy: Policy = POLICY,
    flags: int = 0,
    radius: float | None = None,
    fix_fields: dict[str, Any] | None = None,
    **judgement: Any,
) -> Judged:
    """A fix as geofence.judge would hand it on: `judgement` holds the classes it found
    (allowed=, depth=, exclusion=, home=, leave=, trip_s=, late=…). The radius is the
    policy's error radius for the fix unless given."""
    f = fix(t_s, east=east, north=north, position=position, **(fix_fields or {}))
    if radius is None:
        radius = error_radius(f, policy)[0] if position else 0.0
    return Judged(f, PERSON, policy, flags, radius, **judgement)


def square_zone(
    zone_id: str,
    kind: str,
    half_m: float,
    *,
    east: float = 0.0,
    north: float = 0.0,
    schedule: tuple[Window, ...] = (),
) -> ZoneDef:
    """A square zone `half_m` metres either side of a point `east`/`north` of CENTRE."""
    feature = square_m(zone_id, kind, point(east, north), half_m)
    return ZoneDef(zone_id, kind, feature["geometry"], name=zone_id, schedule=schedule)


def circle_zone(zone_id: str, kind: str, radius_m: float, *, east: float = 0.0) -> ZoneDef:
    lat, lon = point(east, 0.0)
    return ZoneDef(zone_id, kind, {"type": "Point", "coordinates": [lon, lat]}, radius_m=radius_m)


class Lane:
    """One track of one device, judged by `stages` in the order given, as the pipeline
    runs them. Lanes built on one `EngineState` share the person's episodes, as a device's
    live and late tracks (or two devices of one person) do."""

    def __init__(
        self,
        *stages: Stage,
        state: EngineState | None = None,
        late: bool = False,
        kinds: dict[str, str] | None = None,
    ) -> None:
        self.stages = stages
        self.state = state or EngineState()
        self.track = Track()
        self.verdicts: list[Verdict] = []
        self.late = late
        self.kinds = kinds  # device → tag | phone, as the roster says

    def feed(self, *fixes: Judged) -> list[Verdict]:
        """The verdicts these fixes bring."""
        ctx = StepContext(self.state, [], self.kinds)
        ctx.late_track = self.late
        for j in fixes:
            for stage in self.stages:
                if not stage(ctx, self.track, j):
                    break
        self.verdicts += ctx.verdicts
        return ctx.verdicts

    def actions(self, fixes: Sequence[Judged]) -> list[str]:
        """Per fix, what it brought: "" for nothing, else its verdicts' actions joined by +."""
        return ["+".join(v.action for v in self.feed(j)) for j in fixes]


def alerts(verdicts: Sequence[Verdict]) -> list[tuple[str, str]]:
    """(action, type) of the verdicts an officer sees as alerts (pursuit is a command)."""
    return [(v.action, v.type) for v in verdicts if v.type != "pursuit"]
