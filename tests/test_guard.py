"""geofence.guard (issue 13): the engine raising on one person's input — a zone or policy no
validation let through — sets that input aside and leaves everyone else judged exactly as
if it had never come."""

from __future__ import annotations

import msgspec
import pytest

from fencewatch.scenario import parse_supervisee
from geofence import guard
from geofence.engine import Engine
from geofence.model import Fix, Heightened, Roster, ZoneDef
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from tests.kit import LIANDU, LIANDU_SEAT, T0, fix, lishui_collection
from tests.test_engine import raised, walk_out

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # GEOS overflowing, as meant
ZONES = parse_feature_collection(lishui_collection())
# A circle around the city seat no validation lets through (geofence.limits): GEOS
# overflows buffering it, for fixes whose error circle is 25–2,500 m.
POISON = ZoneDef(
    "X",
    "exclusion",
    {"type": "Point", "coordinates": [LIANDU_SEAT[1], LIANDU_SEAT[0]]},
    radius_m=1e308,
)


def _rules(heightened: list[Heightened] = ()) -> RuleSet:  # type: ignore[assignment]
    people = [
        parse_supervisee({"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]}),
        parse_supervisee(
            {"id": "S2", "jurisdiction": [LIANDU], "exclusion": ["X"], "devices": ["T2"]}
        ),
    ]
    return RuleSet(Roster(supervisees=people, heightened=list(heightened)), [*ZONES, POISON])


def _s2(seq: int, acc: float) -> Fix:
    return Fix("T2", seq, T0 + seq * 30_000, T0 + seq * 30_000 + 500, *LIANDU_SEAT, acc=acc)


def _state(engine: Engine, device: str, person: str) -> bytes:
    return msgspec.msgpack.encode(
        (engine.state.devices.get(device), engine.state.people.get(person))
    )


def test_a_poison_zone_raises_in_the_bare_engine() -> None:
    with pytest.raises(Exception, match=r"IllegalArgument"):
        Engine(_rules()).process([_s2(1, 30)])


def test_a_poison_zone_costs_only_its_own_persons_messages() -> None:
    walk = [fix(f, "T1") for f in walk_out()]
    alone = Engine(_rules())
    guarded = Engine(_rules())
    alerts = []
    for i, f in enumerate(walk):
        alone.process([f])
        batch = [([f], ()), ([_s2(i + 1, 30)], ())]
        out = guard.process(guarded, batch)
        assert [(x.supervisee, x.device, x.index) for x in out.faults] == [("S2", "T2", 1)]
        assert "GEOSException" in out.faults[0].error
        assert [j.fix for j in out.judged] == [f]
        alerts += raised(out.verdicts)
        # S1's state is exactly what judging S1 alone made of it: nothing half-updated.
        assert _state(guarded, "T1", "S1") == _state(alone, "T1", "S1")
    assert [a.type for a in alerts] == ["jurisdiction_exit"]
    # The poisoned device was still heard from: no false device_offline.
    assert guarded.state.devices["T2"].last_at == _s2(len(walk), 30).at


def test_only_the_poison_message_of_a_person_is_set_aside() -> None:
    engine = Engine(_rules())
    batch = [([_s2(1, 5)], ()), ([_s2(2, 30)], ()), ([_s2(3, 5)], ())]
    out = guard.process(engine, batch)
    assert [x.index for x in out.faults] == [1]
    assert [j.fix.seq for j in out.judged] == [1, 3]


def test_a_watchdog_that_raises_is_set_aside_and_the_others_fire() -> None:
    engine = Engine(_rules())
    engine.process([fix({"seq": 1, "ts": T0, **_at_seat()}, "T1")])
    engine.process([fix({"seq": 1, "ts": T0 + 60_000, **_at_seat()}, "T2")])
    # A period written around validation, covering T2's last report only: computing T2's
    # deadline raises (a str where seconds belong).
    bad = Heightened(start=T0 + 30_000, end=T0 + 86_400_000, policy={"offline_s": "soon"})
    bare = Engine.restore(engine.rules, engine.snapshot())
    engine.rules = bare.rules = _rules([bad])
    later = T0 + 2 * 3_600_000
    with pytest.raises(TypeError):
        bare.tick(later)

    verdicts, faults = guard.tick(engine, later)
    assert [(v.type, v.device) for v in raised(verdicts)] == [("device_offline", "T1")]
    assert [(f.supervisee, f.device, f.index) for f in faults] == [("S2", "T2", None)]
    assert guard.tick(engine, later + 3_600_000) == ([], [])
    # Its next report, judged under rules the engine can use, arms it again.
    engine.rules = _rules()
    engine.process([fix({"seq": 2, "ts": later, **_at_seat()}, "T2")])
    verdicts, faults = guard.tick(engine, later + 3_600_000)
    assert [(v.type, v.device) for v in raised(verdicts)] == [("device_offline", "T2")]


def _at_seat() -> dict[str, float]:
    return {"lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1], "acc": 5.0}
