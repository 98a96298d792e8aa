"""The naive tracker every EM system starts as: `python -m simulators.baseline SCENARIO_DIR`.

Each fix, as it arrives, is a point: outside the allowed area after being inside → an
alert; inside an exclusion zone (while in force) after being outside it → an alert; out of
the home zone during curfew → an alert. No accuracy radius, no confirmation, no
de-duplication, no reordering. Faults straight from the raw fields: a fix without a
position, a battery at or below 20%, a strap not `ok`, a tamper event, half an hour of
silence. Output is replay's: one JSON alert a line. It is what fencewatch is scored
against (simulators.score --baseline).
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import numpy as np

from fencewatch.scenario import read_pings, read_roster, read_zones
from fencewatch.timefmt import iso
from geofence.model import Fix
from geofence.ruleset import RuleSet
from ingest.decode import decode_for

OFFLINE_MS = 30 * 60_000
LOW_PCT = 20


class Baseline:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.flags: set[tuple[str, str]] = set()  # (condition, key) currently true
        self.last_at: dict[str, int] = {}
        self.alerts: list[dict[str, object]] = []

    def _alert(self, kind: str, device: str, ts: int) -> None:
        person = self.rules.device_owner[device]
        self.alerts.append({"type": kind, "supervisee": person, "device": device, "ts": iso(ts)})

    def _edge(self, kind: str, key: str, now: bool, device: str, ts: int) -> None:
        """Alert when a condition turns true; forget it when it turns false."""
        flag = (kind, key)
        if now and flag not in self.flags:
            self.flags.add(flag)
            self._alert(kind, device, ts)
        elif not now:
            self.flags.discard(flag)

    def _inside(self, zones: tuple[str, ...], fix: Fix) -> bool:
        area = self.rules.area(zones)
        return bool(area.classify(np.array([fix.lat]), np.array([fix.lon]), np.zeros(1))[0] > 0)

    def fix(self, fix: Fix) -> None:
        rules, d = self.rules, fix.device
        person = rules.supervisees[rules.device_owner[d]]
        self._edge("no_fix", d, not fix.has_position, d, fix.ts)
        if fix.batt is not None:
            self._edge("low_battery", d, fix.batt <= LOW_PCT and not fix.chg, d, fix.ts)
        if fix.strap is not None:
            self._edge("strap_tamper", d, fix.strap != "ok", d, fix.ts)
        if not fix.has_position:
            return
        if person.jurisdiction:
            leave = rules.active_leave(person, fix.ts)
            allowed = person.jurisdiction + (leave.destinations if leave else ())
            self._edge("jurisdiction_exit", person.id, not self._inside(allowed, fix), d, fix.ts)
        for zone_id in person.exclusion:
            zone = rules.zones[zone_id]
            bad = rules.zone_active(zone, fix.ts) and self._inside((zone_id,), fix)
            self._edge("exclusion_enter", f"{person.id}/{zone_id}", bad, d, fix.ts)
        if person.home:
            zone = rules.zones[person.home]
            out = rules.zone_active(zone, fix.ts) and not self._inside((person.home,), fix)
            self._edge("curfew_breach", person.id, out, d, fix.ts)

    def event(self, device: str, kind: str, ts: int) -> None:
        if kind in ("strap_open", "strap_cut"):
            self._alert("strap_tamper", device, ts)
        elif kind == "low_battery":
            self._edge("low_battery", device, True, device, ts)

    def clock(self, now: int) -> None:
        for device, at in self.last_at.items():
            self._edge("device_offline", device, now - at >= OFFLINE_MS, device, now)

    def arrived(self, device: str, at: int) -> None:
        self.last_at[device] = at
        self.flags.discard(("device_offline", device))


def run(scenario: Path) -> list[dict[str, object]]:
    rules = RuleSet(read_roster(scenario / "roster.json"), read_zones(scenario / "zones.geojson"))
    naive = Baseline(rules)
    for ping in read_pings(scenario / "pings.jsonl"):
        naive.clock(ping.at)
        decoded = decode_for(rules, ping.topic, bytes(ping.payload), ping.at)
        for fix in decoded.fixes:
            naive.arrived(fix.device, ping.at)
            naive.fix(fix)
        for event in decoded.events:
            naive.arrived(event.device, ping.at)
            naive.event(event.device, event.type, event.ts)
    return naive.alerts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m simulators.baseline SCENARIO_DIR", file=sys.stderr)
        return 2
    encoder = msgspec.json.Encoder()
    for alert in run(Path(args[0])):
        sys.stdout.buffer.write(encoder.encode(alert) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
