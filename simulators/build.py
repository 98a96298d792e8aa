"""A scenario being built: zones, people with their true paths and devices, and what each
person is expected to do; rendered into a spec 4.2 directory plus `truth.json`.

Rendering runs every device through the GPS model, the encoder and the network, merges
what the broker received in arrival order, and derives the truth from the people's real
paths and the devices' real output (simulators.truth). With `pursuit`, devices obey the
commands the service would send them while a breach is pending or open (simulators.pursuit).
A recipe states what it meant to happen (`expect`); `render` checks the truth against it,
so a random draw that went somewhere unintended (a shortcut across a county corner) is
caught, not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from fencewatch.scenario import parse_supervisee
from geofence.model import Roster, ZoneDef
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from ingest import topics
from simulators import checkins, lishui
from simulators.closeness import contact_truth, gathering_truth, protected_truth
from simulators.device import DevicePlan, DeviceSim
from simulators.life import TIMEZONE, local_iso
from simulators.pursuit import obeying
from simulators.route import Track
from simulators.truth import Truth, ground_truth
from simulators.uplink import Ping, deliver
from supervision.checkin_rules import Schedule

BREACHES = ("jurisdiction_exit", "exclusion_enter", "curfew_breach")
# What a recipe's `expect` speaks for: the breaches, a phone left behind, a missed check-in.
EXPECTED = (*BREACHES, "device_separation", "checkin_missed")


@dataclass
class Person:
    id: str
    track: Track
    devices: list[DevicePlan]
    jurisdiction: tuple[str, ...] = (lishui.LIANDU,)
    exclusion: tuple[str, ...] = ()
    home: str | None = None
    leaves: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)
    # Breach types (and device_separation) that must each occur (for real) at least once,
    # and no others. None: any.
    expect: frozenset[str] | None = frozenset()
    # Optional roster fields beyond spec 4.2 (fencewatch.scenario.Center, name, level,
    # office): who the person is, for a demo that looks like a real centre.
    profile: dict[str, Any] = field(default_factory=dict)
    # The roster's optional `checkins` (定位签到): the person's phones are asked, and the
    # person answers (simulators.checkins).
    checkins: Schedule | None = None

    def roster_entry(self) -> dict[str, Any]:
        devices: list[Any] = [
            {"id": d.id, "jt808": d.jt808}
            if d.jt808 is not None
            else d.id
            if d.kind == "tag"
            else {"id": d.id, "kind": "phone", "osmand": d.osmand}
            if d.osmand is not None
            else {"id": d.id, "kind": "phone", "owntracks": d.owntracks}
            for d in self.devices
        ]
        return {
            "id": self.id,
            **self.profile,
            "jurisdiction": list(self.jurisdiction),
            "exclusion": list(self.exclusion),
            "home": self.home,
            "devices": devices,
            "leaves": [
                {"from": local_iso(a), "to": local_iso(b), "destinations": list(dest)}
                for a, b, dest in self.leaves
            ],
            **({"checkins": msgspec.to_builtins(self.checkins)} if self.checkins else {}),
        }


class UnintendedError(Exception):
    """The random draw did not do what the recipe meant; try another."""


@dataclass
class Rendered:
    zones: dict[str, Any]
    roster: dict[str, Any]
    pings: list[Ping]
    truth: list[Truth]


class Scenario:
    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.places: list[dict[str, Any]] = []  # zones besides the counties
        self.people: list[Person] = []
        # roster `no_contact` and `gathering` (docs/rules.md), judged by simulators.closeness
        self.no_contact: list[dict[str, Any]] = []
        self.gathering: dict[str, Any] | None = None
        # roster `protected` entries, with each protected person's phone (its `device`)
        self.protected: list[tuple[dict[str, Any], DevicePlan]] = []
        self.offices: list[dict[str, Any]] = []  # the optional roster `offices`

    def zone(self, feature: dict[str, Any]) -> str:
        self.places.append(feature)
        return str(feature["properties"]["id"])

    def add(self, person: Person) -> Person:
        self.people.append(person)
        return person

    def zones_doc(self) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": lishui.zone_features() + self.places}

    def zone_defs(self) -> list[ZoneDef]:
        places = {"type": "FeatureCollection", "features": self.places}
        return [*lishui.county_zones(), *parse_feature_collection(places)]

    def roster_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"timezone": TIMEZONE}
        if self.offices:
            doc["offices"] = self.offices
        if self.no_contact:
            doc["no_contact"] = self.no_contact
        if self.gathering is not None:
            doc["gathering"] = self.gathering
        if self.protected:
            doc["protected"] = [entry for entry, _ in self.protected]
        return {**doc, "supervisees": [p.roster_entry() for p in self.people]}

    def render(self, seed: int, pursuit: bool = False) -> Rendered:
        zones, roster = self.zones_doc(), self.roster_doc()
        people = Roster(TIMEZONE, [parse_supervisee(s) for s in roster["supervisees"]])
        rules = RuleSet(people, self.zone_defs()) if pursuit else None
        pings: list[Ping] = []
        asks = {
            p.id: checkins.asked(p.id, p.checkins, self.start, self.end)
            for p in self.people
            if p.checkins is not None
        }
        k = 0
        for person in self.people:
            dues = [due for due, _ in asks.get(person.id, ())]
            for plan in person.devices:
                if dues and plan.owntracks is not None:
                    messages = checkins.answering(plan, dues, self.end)
                elif rules is None:
                    messages = DeviceSim(plan).advance(self.end)
                else:
                    messages = obeying(plan, rules, self.end)
                pings += deliver(messages, plan.link, np.random.default_rng((seed, k, 11)))
                k += 1
        # The supervision app's face verifications: on the wire, from no device.
        faces: list[Ping] = []
        for n, person in enumerate(self.people):
            phone = next((d for d in person.devices if d.owntracks is not None), None)
            if person.id in asks and phone is not None:
                rng = np.random.default_rng((seed, 2000 + n, 11))
                faces += checkins.verifications(
                    person.id, person.track, phone, asks[person.id], rng
                )
        pings.sort(key=lambda p: p.at)
        truth = ground_truth(
            people,
            self.zone_defs(),
            {p.id: p.track for p in self.people},
            pings,
            self.start,
            pings[-1].at if pings else self.end,
            {d.id: d.track for p in self.people for d in p.devices},
        )
        # Protected persons' phones are on the wire but on no one's roster entry: what they
        # send is no supervisee's truth.
        shielded: list[Ping] = []
        for k, (_, plan) in enumerate(self.protected):
            messages = DeviceSim(plan).advance(self.end)
            shielded += deliver(messages, plan.link, np.random.default_rng((seed, 1000 + k, 11)))
        pings = sorted(pings + shielded + faces, key=lambda p: p.at)
        tracks = {p.id: p.track for p in self.people}
        clock_end = pings[-1].at if pings else self.end
        truth += protected_truth(
            tracks, [(e, plan.track) for e, plan in self.protected], self.start, clock_end
        )
        truth += contact_truth(tracks, self.no_contact, self.start, clock_end)
        for person in self.people:
            phones = {topics.owntracks(d.owntracks): d.id for d in person.devices if d.owntracks}
            if person.checkins is not None and phones:
                face = person.checkins.face
                checks = asks[person.id]
                truth += checkins.checkin_truth(person.id, phones, checks, face, pings, clock_end)
        if self.gathering is not None:
            workplaces = {
                p.id: p.profile["workplace"]
                for p in self.people
                if isinstance(p.profile.get("workplace"), dict)
            }
            truth += gathering_truth(tracks, self.gathering, self.start, clock_end, workplaces)
        self._check(truth)
        return Rendered(zones, roster, pings, truth)

    def _check(self, truth: list[Truth]) -> None:
        for p in self.people:
            if p.expect is None:
                continue
            seen = {
                e["type"]
                for e in truth
                if e["supervisee"] == p.id and e["type"] in EXPECTED and not e.get("optional")
            }
            if seen != p.expect:
                raise UnintendedError(f"{p.id}: expected {sorted(p.expect)}, got {sorted(seen)}")


def write_setup(out: Path, zones: dict[str, Any], roster: dict[str, Any]) -> None:
    """zones.geojson and roster.json: what `fencewatch load` imports."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "zones.geojson").write_bytes(msgspec.json.encode(zones))
    (out / "roster.json").write_bytes(msgspec.json.format(msgspec.json.encode(roster)))


def write(out: Path, rendered: Rendered) -> None:
    write_setup(out, rendered.zones, rendered.roster)
    encoder = msgspec.json.Encoder()
    with (out / "pings.jsonl").open("wb") as f:
        for p in rendered.pings:
            f.write(encoder.encode({"at": p.at, "topic": p.topic, "payload": p.payload}))
            f.write(b"\n")
    (out / "truth.json").write_bytes(msgspec.json.format(encoder.encode(rendered.truth)))
