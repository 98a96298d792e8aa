"""No-contact orders and gatherings over everyone's latest trusted positions, with no I/O.

`Together.see` takes one person's new sighting, compares it with the people it must be
compared with — the others named in that person's no-contact orders, and for gatherings
whoever is near (a grid of cells the gathering radius wide) — steps each pair's
confirmation (geofence.proximity) and returns the verdicts: `contact` for a no-contact
order confirmed, `gathering` for `size` or more people each confirmed close to every
other, then `join` when more are confirmed close to them. `fencewatch replay` feeds it
every trusted fix as the engine judges it; the same object serves a live proximity check
fed from every shard (docs/scaling.md).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Set

import msgspec

from geofence import proximity
from geofence.geo import M_PER_DEG, metres
from geofence.model import Gathering, NoContact, Protection, Verdict
from geofence.proximity import APART, CLOSE, Closeness, Run, Sighting
from geofence.ruleset import RuleSet

CONTACT = "contact"
GATHERING = "gathering"
PROTECTED = "protected_proximity"
PROTECTED_PREFIX = "protected:"  # a protected person's key among the people (Protection.person)

Pair = tuple[str, str]
_SEP = "\x1f"  # joins ids into a snapshot's keys: no id contains it (printable ids only)


class TogetherState(msgspec.Struct):
    """What the watcher knows, to save and restore (pairs joined by `_SEP`)."""

    latest: dict[str, Sighting] = {}
    contacts: dict[str, Run] = {}  # order id, person, person
    close: dict[str, Run] = {}  # person, person
    groups: dict[str, list[str]] = {}  # open gatherings: key → people

    def protected(self) -> list[str]:
        """The protected persons it knows where they were."""
        return [p for p in self.latest if p.startswith(PROTECTED_PREFIX)]

    def without(self, people: Set[str]) -> TogetherState:
        """This state with nothing left of `people`: their latest sightings and runs."""
        return TogetherState(
            {p: s for p, s in self.latest.items() if p not in people},
            {k: r for k, r in self.contacts.items() if people.isdisjoint(k.split(_SEP))},
            {k: r for k, r in self.close.items() if people.isdisjoint(k.split(_SEP))},
            self.groups,
        )


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


class _Grid:
    """Who was last seen in which cell, cells `size_m` wide; a row's cells are as many
    degrees of longitude wide as `size_m` is at that row's latitude."""

    def __init__(self, size_m: float) -> None:
        self.size_m = size_m
        self.cells: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.where: dict[str, tuple[int, int]] = {}

    def _width(self, row: int) -> float:
        lat = min(abs(row * self.size_m / M_PER_DEG), 89.0)
        return self.size_m / (M_PER_DEG * math.cos(math.radians(lat)))

    def _cell(self, lat: float, lon: float, row: int | None = None) -> tuple[int, int]:
        row = math.floor(lat * M_PER_DEG / self.size_m) if row is None else row
        return row, math.floor(lon / self._width(row))

    def put(self, person: str, lat: float, lon: float) -> None:
        self.drop(person)
        cell = self._cell(lat, lon)
        self.cells[cell].add(person)
        self.where[person] = cell

    def drop(self, person: str) -> None:
        cell = self.where.pop(person, None)
        if cell is not None:
            self.cells[cell].discard(person)
            if not self.cells[cell]:
                del self.cells[cell]

    def near(self, lat: float, lon: float) -> Iterator[str]:
        """Everyone in the cells around (lat, lon): all within `size_m` of it, and more."""
        row = self._cell(lat, lon)[0]
        for r in (row - 1, row, row + 1):
            col = self._cell(lat, lon, r)[1]
            for c in (col - 1, col, col + 1):
                yield from self.cells.get((r, c), ())


class Together:
    def __init__(
        self,
        orders: Iterable[NoContact] = (),
        gathering: Gathering | None = None,
        exempt: Callable[[Sighting], bool] = lambda s: False,
        closeness: Closeness = proximity.DEFAULT,
        protected: Iterable[Protection] = (),
    ) -> None:
        self.closeness = closeness
        self.gathering = gathering
        # Whether a sighting is at the person's home or workplace: no gathering there.
        self.exempt = exempt
        self.latest: dict[str, Sighting] = {}
        # person → (order, other person) for every pair its no-contact orders name
        self.partners: dict[str, list[tuple[NoContact, str]]] = defaultdict(list)
        self._order_closeness: dict[str, Closeness] = {}
        for order in orders:
            if order.confirm_s != closeness.confirm_s:
                self._order_closeness[order.id] = msgspec.structs.replace(
                    closeness, confirm_s=order.confirm_s
                )
            for a in order.people:
                self.partners[a] += [(order, b) for b in order.people if b != a]
        # A protected person is a no-contact order of one supervisee with a phone's
        # bearer; their runs are kept with the orders' under the protection's id.
        self.protections: dict[str, list[Protection]] = defaultdict(list)
        for p in protected:
            self.protections[p.person].append(p)
            self.protections[p.supervisee].append(p)
            self._order_closeness[p.id] = msgspec.structs.replace(closeness, confirm_s=p.confirm_s)
        self.contacts: dict[tuple[str, Pair], Run] = {}
        self.grid = _Grid(gathering.radius_m) if gathering is not None else None
        self.close: dict[Pair, Run] = {}  # pairs being watched for a gathering
        self.neighbours: dict[str, set[str]] = defaultdict(set)
        self.groups: dict[str, set[str]] = {}  # open gatherings by key

    @classmethod
    def for_rules(cls, rules: RuleSet) -> Together | None:
        """The rules' no-contact orders and gathering rule, or None when they have
        neither."""
        if not rules.no_contact and rules.gathering is None and not rules.protected:
            return None
        return cls(
            rules.no_contact,
            rules.gathering,
            lambda s: rules.at_home_or_work(s.person, s.lat, s.lon, s.radius),
            protected=rules.protected,
        )

    def state(self) -> TogetherState:
        return TogetherState(
            dict(self.latest),
            {_SEP.join((o, *p)): r for (o, p), r in self.contacts.items()},
            {_SEP.join(p): r for p, r in self.close.items()},
            {k: sorted(v) for k, v in self.groups.items()},
        )

    def load(self, state: TogetherState) -> None:
        """Take up `state` (saved by this watcher, or one under other rules: what the rules
        no longer ask about is dropped)."""
        # A protected person no longer protected leaves no trace of where they were.
        self.latest = {
            person: s
            for person, s in state.latest.items()
            if not person.startswith(PROTECTED_PREFIX) or person in self.protections
        }
        orders = {order.id for partners in self.partners.values() for order, _ in partners}
        orders |= set(self.protections)
        for key, run in state.contacts.items():
            order, a, b = key.split(_SEP)
            if order in orders:
                self.contacts[(order, (a, b))] = run
        if self.grid is None:
            return
        for key, run in state.close.items():
            a, b = key.split(_SEP)
            self.close[(a, b)] = run
            self.neighbours[a].add(b)
            self.neighbours[b].add(a)
        self.groups = {k: set(v) for k, v in state.groups.items()}
        for s in self.latest.values():
            if not self.exempt(s):
                self.grid.put(s.person, s.lat, s.lon)

    def see(self, s: Sighting) -> list[Verdict]:
        """The verdicts one person's new sighting brings (older than their latest: none)."""
        before = self.latest.get(s.person)
        if before is not None and s.ts <= before.ts:
            return []
        self.latest[s.person] = s
        verdicts: list[Verdict] = []
        for protection in self.protections.get(s.person, ()):
            self._protected(s, protection, verdicts)
        if s.person.startswith(PROTECTED_PREFIX):
            return verdicts  # no supervisee: in no order of theirs, at no gathering
        for order, other in self.partners.get(s.person, ()):
            self._contact(s, order, other, verdicts)
        if self.gathering is not None:
            self._gathering(s, self.gathering, verdicts)
        return verdicts

    # -- no-contact orders -----------------------------------------------------------------

    def _contact(self, s: Sighting, order: NoContact, other: str, out: list[Verdict]) -> None:
        them = self.latest.get(other)
        if them is None:
            return
        pair = _pair(s.person, other)
        run = self.contacts.setdefault((order.id, pair), Run())
        closeness = self._order_closeness.get(order.id, self.closeness)
        rel = proximity.relation(s, them, order.distance_m, closeness)
        event = proximity.step(run, rel, s.ts, closeness, them.ts)
        if event is None:
            return
        # One alert for each of the two: each has breached the order, and each alert goes
        # to that person's own office (alerts.routing).
        for me, you in ((s, them), (them, s)):
            detail = {
                "order": order.id,
                "lat": me.lat,
                "lon": me.lon,
                "people": list(pair),
                "with": you.person,
                "distance_m": order.distance_m,
                "apart_m": round(metres(s.lat, s.lon, them.lat, them.lon)),
                "start": run.episode,
                "positions": [_where(me), _where(you)],
            }
            key = f"{CONTACT}:{order.id}:{me.person}:{you.person}:{run.episode}"
            out.append(Verdict(event, CONTACT, me.person, me.device, s.ts, key, detail=detail))

    def _protected(self, s: Sighting, p: Protection, out: list[Verdict]) -> None:
        other = p.supervisee if s.person == p.person else p.person
        them = self.latest.get(other)
        if them is None:
            return
        run = self.contacts.setdefault((p.person, (p.supervisee, p.person)), Run())
        closeness = self._order_closeness[p.id]
        rel = proximity.relation(s, them, p.distance_m, closeness)
        event = proximity.step(run, rel, s.ts, closeness, them.ts)
        if event is None:
            return
        person, bearer = (them, s) if s.person == p.person else (s, them)
        key = f"{PROTECTED}:{p.id}:{run.episode}"
        detail = {
            "order": p.id,
            "lat": person.lat,
            "lon": person.lon,
            "distance_m": p.distance_m,
            "apart_m": round(metres(s.lat, s.lon, them.lat, them.lon)),
            "start": run.episode,
            "positions": [_where(person)],
            # Where the protected person was: evidence for this alert only (docs/rules.md).
            "protected": _where(bearer),
        }
        out.append(Verdict(event, PROTECTED, p.supervisee, person.device, s.ts, key, detail=detail))

    # -- gatherings ------------------------------------------------------------------------

    def _gathering(self, s: Sighting, rule: Gathering, out: list[Verdict]) -> None:
        assert self.grid is not None
        hold = msgspec.structs.replace(self.closeness, confirm_s=rule.hold_s)
        exempt = self.exempt(s)
        if exempt:
            self.grid.drop(s.person)
        else:
            self.grid.put(s.person, s.lat, s.lon)
        others = set(self.neighbours[s.person])
        if not exempt:
            others.update(self.grid.near(s.lat, s.lon))
        others.discard(s.person)
        for other in others:
            them = self.latest[other]
            pair = _pair(s.person, other)
            rel = APART if exempt else proximity.relation(s, them, rule.radius_m, hold)
            run = self.close.get(pair)
            if run is None:
                if rel != proximity.WITHIN:
                    continue
                run = self.close[pair] = Run()
                self.neighbours[s.person].add(other)
                self.neighbours[other].add(s.person)
            proximity.step(run, rel, s.ts, hold, them.ts)
            if run.phase == proximity.CLEAR:
                del self.close[pair]
                self.neighbours[s.person].discard(other)
                self.neighbours[other].discard(s.person)
        self._groups(s, rule, out)

    def _together(self, a: str, b: str) -> bool:
        run = self.close.get(_pair(a, b))
        return run is not None and run.phase == CLOSE

    def _clique(self, people: Iterable[str]) -> set[str]:
        """The people of `people` each confirmed close to every other, greedily: the best
        connected first."""
        pool = sorted(
            people, key=lambda p: (-sum(self._together(p, q) for q in people if q != p), p)
        )
        kept: list[str] = []
        for p in pool:
            if all(self._together(p, q) for q in kept):
                kept.append(p)
        return set(kept)

    def _groups(self, s: Sighting, rule: Gathering, out: list[Verdict]) -> None:
        for key, members in list(self.groups.items()):
            if s.person in members and len(self._clique(members)) < rule.size:
                del self.groups[key]
                out.append(Verdict("clear", GATHERING, s.person, s.device, s.ts, key))
        close = {q for q in self.neighbours[s.person] if self._together(s.person, q)}
        if len(close) + 1 < rule.size:
            return
        group = self._clique({s.person, *close})
        if len(group) < rule.size:
            return
        for key, members in self.groups.items():
            if len(members & group) >= 2:
                # The same gathering, grown: whoever is new to it is told (alerts.escalation).
                joined = sorted(group - members)
                members |= group
                if joined:
                    detail = {
                        "people": sorted(members),
                        "joined": joined,
                        "positions": [_where(self.latest[p]) for p in joined],
                    }
                    out.append(
                        Verdict("join", GATHERING, s.person, s.device, s.ts, key, detail=detail)
                    )
                return
        start = min(self.close[_pair(a, b)].start for a in group for b in group if a < b)
        people = sorted(group)
        key = f"{GATHERING}:{people[0]}:{start}"
        self.groups[key] = group
        detail = {
            "lat": s.lat,
            "lon": s.lon,
            "people": people,
            "radius_m": rule.radius_m,
            "start": start,
            "positions": [_where(self.latest[p]) for p in people],
        }
        out.append(Verdict("raise", GATHERING, s.person, s.device, s.ts, key, detail=detail))


def _where(s: Sighting) -> dict[str, object]:
    return {
        "supervisee": s.person,
        "device": s.device,
        "lat": s.lat,
        "lon": s.lon,
        "radius_m": round(s.radius, 1),
        "ts": s.ts,
    }
