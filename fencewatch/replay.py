"""`fencewatch replay SCENARIO_DIR` (spec 4.2): recorded pings through the live engine,
with no servers; one JSON alert a line on stdout, problems on stderr."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import msgspec

from fencewatch.scenario import (
    ScenarioError,
    check_folder,
    read_checkin_schedules,
    read_pings,
    read_roster,
    read_zones,
)
from fencewatch.timefmt import iso
from geofence.engine import Engine
from geofence.model import Verdict
from geofence.proximity import protected_sighting, sighting
from geofence.ruleset import RuleSet
from geofence.together import Together
from geofence.zones import ZoneError
from ingest.decode import decode_for, decode_protected
from supervision.checkin_book import TOPIC as CHECKIN
from supervision.checkin_book import CheckinBook


def alert_line(v: Verdict) -> bytes:
    """A new alert, as spec 4.2 prints it."""
    return msgspec.json.encode(
        {
            "type": v.type,
            "supervisee": v.supervisee,
            "device": v.device,
            "ts": iso(v.ts),
            "late": v.late,
            "key": v.key,
            "detail": v.detail,
        }
    )


FILES = ("zones.geojson", "roster.json", "pings.jsonl")


def replay(scenario: Path, out: TextIO, err: TextIO) -> int:
    check_folder(scenario, FILES)
    roster = read_roster(scenario / "roster.json")
    rules = RuleSet(roster, read_zones(scenario / "zones.geojson"))
    for problem in rules.problems:
        print(f"warning: {problem}", file=err)
    engine = Engine(rules)
    # People near people: every trusted fix, as judged, against everyone's latest.
    together = Together.for_rules(rules)
    # Check-ins (定位签到): asked as the clock passes their due times, settled as it passes
    # their deadlines, by the live duty's rule.
    checkins = CheckinBook(roster, read_checkin_schedules(scenario / "roster.json"))
    alerts = 0

    def emit(verdicts: list[Verdict]) -> None:
        nonlocal alerts
        for v in verdicts:
            if v.action == "raise":
                alerts += 1
                out.write(alert_line(v).decode() + "\n")
            elif v.action == "join":
                # Not a new alert (spec 4.2's output is one alert a line): the people now
                # listed by the gathering already printed, said beside the warnings.
                joined = ", ".join(v.detail["joined"])
                print(f"joined {v.key} at {iso(v.ts)}: {joined}", file=err)

    for ping in read_pings(scenario / "pings.jsonl"):
        emit(engine.tick(ping.at))
        emit(checkins.tick(ping.at))
        if ping.topic == CHECKIN:
            try:
                emit(checkins.verify(bytes(ping.payload), ping.at))
            except (ValueError, msgspec.DecodeError) as exc:
                print(f"rejected {CHECKIN} at {iso(ping.at)}: {exc}", file=err)
            continue
        protected = decode_protected(rules, ping.topic, bytes(ping.payload), ping.at)
        if protected is not None:
            # A protected person's phone: no engine's, only the watcher's.
            for r in protected.rejections:
                print(f"rejected {r.topic} at {iso(ping.at)}: {r.reason}: {r.detail}", file=err)
            for fix in protected.fixes:
                seen = protected_sighting(fix, rules.protected_devices[fix.device])
                if together is not None and seen is not None:
                    emit(together.see(seen))
            continue
        decoded = decode_for(rules, ping.topic, bytes(ping.payload), ping.at)
        for r in decoded.rejections:
            print(f"rejected {r.topic} at {iso(ping.at)}: {r.reason}: {r.detail}", file=err)
        outcome = engine.process(decoded.fixes, decoded.events)
        emit(outcome.verdicts)
        for fix in decoded.fixes:
            checkins.see(fix)
        if together is not None:
            for j in outcome.judged:
                if (seen := sighting(j)) is not None:
                    emit(together.see(seen))
    return alerts


def main(scenario: Path) -> int:
    try:
        replay(scenario, sys.stdout, sys.stderr)
    except (OSError, ScenarioError, ZoneError, msgspec.DecodeError) as exc:
        print(f"fencewatch replay: {scenario}: {exc}", file=sys.stderr)
        return 2
    return 0
