"""The 丽水 demo: people living in 莲都区 wearing tags, with something to see at once.

`build_demo(n_tags)` returns the spec 4.2 zones (the nine counties of 丽水市 as DataV has
them, in GCJ-02, plus a victim's home and a school drawn on an Amap, and home zones for
curfews), the roster, and the fleet plan `simulators.fleet.run_fleet` plays live. Plans
start at the moment of building: within the first minute one tag walks out of 莲都 into
a neighbouring county and stays out, another drives out; then an exclusion zone is
entered, a strap is opened, a battery runs low, a tag goes silent and one loses its fix;
someone on approved leave drives to 青田; one person carries a phone running the Traccar
Client, which posts over HTTP (the OsmAnd protocol), instead of a tag, and two wear
wristbands that speak JT/T 808 over TCP to the gateway; one wears a tag and leaves their
phone at home while they drive off (人机分离: device_separation some 20–35 minutes in); two
are supervised by phone alone and asked to check in (定位签到) three times in the first quarter
hour — one answers every time, the other answers late and then misses one (checkin_missed
some 20 minutes in); the rest go about their day, some near the border with their fixes
drifting across it.

The roster reads like a real centre's (its optional fields, fencewatch.scenario.Center):
丽水市 → 莲都区司法局 → four justice stations, each with a head (所长) and officers with
phones and mailboxes, so alerts route and escalate to named people; everyone has a name, a
supervision level, a station and a responsible officer, and everyone wearing a tag or
wristband a monitoring order (some ending within the week); besides the trip to 青田 one
person leaves the day after tomorrow and one never reported back from last week's leave.
All names are invented — a surname and 某, the usual way Chinese documents withhold a
name — and the phone numbers and mailboxes (example.org) are not anyone's.

    python -m simulators.demo OUT_DIR --tags 36 [--minutes 60]

writes the same demo as a scenario directory (its first hour, by default), with truth.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from simulators import lishui
from simulators.build import Person, Scenario, write, write_setup
from simulators.checkins import minutes_of
from simulators.device import Battery, FleetPlan
from simulators.geo import distance_m
from simulators.gps import GpsProfile
from simulators.life import (
    PHONE_GPS,
    TZ,
    minutes,
    nearby,
    phone,
    routine,
    tag,
    traccar_phone,
)
from simulators.places import EVERY_DAY, WEEKDAYS, block, circle, window
from simulators.route import Env, Mode, RouteBuilder
from supervision.checkin_rules import Schedule
from supervision.orders import add_months

MIN = 60_000
H = 3_600_000
DAY = 24 * H
VICTIM = "X-VICTIM-01"
SCHOOL = "X-SCHOOL-01"


class _Demo:
    def __init__(self, rng: np.random.Generator, sc: Scenario) -> None:
        self.rng, self.sc = rng, sc
        self.victim_home = lishui.interior_point(rng, min_depth_m=2000, within_m=3000)
        self.school_site = lishui.interior_point(rng, min_depth_m=2000, within_m=3000)
        sc.zone(
            circle(
                VICTIM, "exclusion", *self.victim_home, 200, crs="gcj02", name="被害人住所周边200米"
            )
        )
        sc.zone(
            block(
                SCHOOL,
                "exclusion",
                *self.school_site,
                220,
                160,
                30,
                crs="gcj02",
                name="某小学(上学时段禁入)",
                schedule=[window(WEEKDAYS, "07:00", "17:30")],
            )
        )

    def _at(self, lat: float, lon: float) -> RouteBuilder:
        return RouteBuilder(self.rng, self.sc.start, lat, lon)

    def _home(self) -> tuple[float, float]:
        if self.rng.uniform() < 0.3:
            return lishui.crossing(self.rng, float(self.rng.uniform(300, 1500)), 0).inside
        return lishui.interior_point(self.rng, min_depth_m=1000, within_m=6000)

    def walk_out(self, sid: str, dev: str) -> Person:
        c = lishui.crossing(self.rng, 25, 900)
        b = self._at(*c.inside).go(*c.outside, Mode.WALK, speed=1.5, wiggle=0.0)
        return self._person(sid, dev, b.linger((self.sc.end - b.now) / 1000, 150))

    def drive_out(self, sid: str, dev: str) -> Person:
        c = lishui.crossing(self.rng, 150, 4000)
        b = self._at(*c.inside).go(*c.outside, Mode.ROAD, speed=18, wiggle=0.0)
        return self._person(sid, dev, b.stay_until(self.sc.end, Env.OUTDOOR))

    def leave(self, sid: str, dev: str) -> Person:
        home = lishui.interior_point(self.rng, min_depth_m=1500, within_m=5000)
        dest = lishui.interior_point(self.rng, lishui.QINGTIAN, min_depth_m=1500, within_m=4000)
        b = self._at(*home).stay(120).go(*dest, Mode.ROAD).stay_until(self.sc.end)
        leave = (self.sc.start - H, self.sc.start + 48 * H, (lishui.QINGTIAN,))
        return self._person(sid, dev, b, leaves=[leave])

    def drift(self, sid: str, dev: str) -> Person:
        c = lishui.crossing(self.rng, float(self.rng.uniform(80, 200)), 0)
        b = self._at(*c.inside).stay_until(self.sc.end)
        gps = GpsProfile(excursions_per_h=1.0, excursion_m=(150, 350), excursion_bearing=c.outward)
        return self._person(sid, dev, b, gps=gps)

    def victim(self, sid: str, dev: str) -> Person:
        start = nearby(self.rng, *self.victim_home, 450, 500)
        b = self._at(*start).stay(180, Env.OUTDOOR).go(*self.victim_home, Mode.WALK)
        b.linger(minutes(25, 35, self.rng), 60).go(*start, Mode.WALK)
        return self._person(sid, dev, routine(b, self.rng, start, self.sc.end), exclusion=(VICTIM,))

    def school(self, sid: str, dev: str) -> Person:
        start = nearby(self.rng, *self.school_site, 350, 400)
        past = nearby(self.rng, *self.school_site, 150, 200)
        b = self._at(*start).go(*past, Mode.WALK).linger(minutes(10, 20, self.rng), 30)
        b.go(*start, Mode.WALK)
        return self._person(sid, dev, routine(b, self.rng, start, self.sc.end), exclusion=(SCHOOL,))

    def strap(self, sid: str, dev: str) -> Person:
        s = self.sc.start
        return self._routine(sid, dev, strap=((s + 6 * MIN, "open"), (s + 14 * MIN, "ok")))

    def battery(self, sid: str, dev: str) -> Person:
        s = self.sc.start
        power = Battery(start_pct=22, drain_pct_h=8, charging=((s + 90 * MIN, s + 5 * H),))
        return self._routine(sid, dev, battery=power)

    def offline(self, sid: str, dev: str) -> Person:
        s = self.sc.start
        return self._routine(sid, dev, silent=((s + 10 * MIN, s + 50 * MIN),))

    def no_fix(self, sid: str, dev: str) -> Person:
        home = self._home()
        b = self._at(*home).stay(180).stay(32 * 60, Env.COVER)
        track = routine(b, self.rng, home, self.sc.end)
        return self._person(sid, dev, track, gps=GpsProfile(cover_cell=0.0))

    def traccar_phone(self, sid: str, dev: str) -> Person:
        home = self._home()
        track = routine(self._at(*home), self.rng, home, self.sc.end).track()
        plan = traccar_phone(self.rng, f"P{dev[1:]}", track)
        return self.sc.add(Person(sid, track, [plan], expect=None))

    def jt808_wristband(self, sid: str, dev: str) -> Person:
        """A day like anyone's, on a wristband that speaks JT/T 808 to the gateway (its
        number made from the device id: the demo's people stay as they were)."""
        number = f"1391100{int(dev[1:]):04d}"
        return self._routine(sid, dev, curfew=int(sid[1:]) % 3 == 0, jt808=number)

    def phone_left_home(self, sid: str, dev: str) -> Person:
        """Wears the tag but leaves the phone at home (人机分离): five minutes after the start
        drives 3 km or more across 莲都 and stays there; the phone pings from home."""
        home = lishui.interior_point(self.rng, min_depth_m=2000, within_m=5000)
        dest = home
        while distance_m(*home, *dest) < 3000:
            dest = lishui.interior_point(self.rng, min_depth_m=1500, near=home, within_m=7000)
        b = self._at(*home).stay(300, Env.INDOOR).go(*dest, Mode.DRIVE)
        track = b.stay_until(self.sc.end, Env.INDOOR).track()
        at_home = self._at(*home).stay_until(self.sc.end, Env.INDOOR).track()
        plans = [tag(self.rng, dev, track), phone(self.rng, f"P{dev[1:]}", at_home)]
        return self.sc.add(Person(sid, track, plans, expect=None))

    def checkins_kept(self, sid: str, dev: str) -> Person:
        """Supervised by phone alone and asked to check in (定位签到) 3, 8 and 15 minutes
        in; the phone answers each request within a minute or two."""
        return self._checking_in(sid, dev, answer_delay_s=float(self.rng.uniform(30, 100)))

    def checkin_missed(self, sid: str, dev: str) -> Person:
        """Asked as checkins_kept; answers the first two late (4–4.5 minutes, just within
        the deadline), then the phone goes quiet for ten minutes and misses the third:
        checkin_missed some 20 minutes in."""
        third = self.sc.start + CHECKINS_AT[2] * MIN
        quiet = ((third - 2 * MIN, third + 8 * MIN),)
        delay = float(self.rng.uniform(240, 270))
        return self._checking_in(sid, dev, answer_delay_s=delay, ignores=quiet, silent=quiet)

    def _checking_in(self, sid: str, dev: str, **kw: Any) -> Person:
        home = self._home()
        track = routine(self._at(*home), self.rng, home, self.sc.end).track()
        # On Wi-Fi at home, never down to a cell fix: what it answers is good enough to count.
        gps = replace(PHONE_GPS, indoor_mix=(0.3, 0.7, 0.0))
        plan = phone(self.rng, f"P{dev[1:]}", track, gps, **kw)
        times = minutes_of(*(self.sc.start + m * MIN for m in CHECKINS_AT))
        checks = Schedule(times=times, deadline_s=CHECKIN_DEADLINE_S)
        return self.sc.add(Person(sid, track, [plan], expect=None, checkins=checks))

    def routine(self, sid: str, dev: str) -> Person:
        return self._routine(sid, dev, curfew=int(sid[1:]) % 3 == 0)

    def _routine(self, sid: str, dev: str, curfew: bool = False, **kw: Any) -> Person:
        home = self._home()
        b = routine(self._at(*home), self.rng, home, self.sc.end)
        zone = None
        if curfew:
            schedule = [window(EVERY_DAY, "22:00", "06:00")]
            zone = self.sc.zone(
                circle(f"H-{sid}", "home", *home, 150, name="居住地(居家时段)", schedule=schedule)
            )
        return self._person(sid, dev, b, home=zone, **kw)

    def _person(
        self,
        sid: str,
        dev: str,
        b: RouteBuilder,
        gps: GpsProfile | None = None,
        exclusion: tuple[str, ...] = (),
        home: str | None = None,
        leaves: list[tuple[int, int, tuple[str, ...]]] | None = None,
        **kw: Any,
    ) -> Person:
        track = b.track()
        plan = tag(self.rng, dev, track, gps, **kw)
        return self.sc.add(
            Person(
                sid, track, [plan], exclusion=exclusion, home=home, leaves=leaves or [], expect=None
            )
        )


ROLES: tuple[Callable[[_Demo, str, str], Person], ...] = (
    _Demo.walk_out,
    _Demo.drive_out,
    _Demo.victim,
    _Demo.leave,
    _Demo.drift,
    _Demo.strap,
    _Demo.battery,
    _Demo.offline,
    _Demo.no_fix,
    _Demo.school,
    _Demo.traccar_phone,
    _Demo.jt808_wristband,
    _Demo.jt808_wristband,
    _Demo.phone_left_home,
    _Demo.checkins_kept,
    _Demo.checkin_missed,
)
# Check-ins in the demo: minutes after the start, and five minutes to answer each.
CHECKINS_AT = (3, 8, 15)
CHECKIN_DEADLINE_S = 300


# The office tree: (id, name, kind, parent); stations each get a head and two officers.
OFFICES = (
    ("LS", "丽水市社区矫正管理局", "city", None),
    ("LD", "莲都区司法局", "county", "LS"),
    ("LD-ZJ", "紫金司法所", "station", "LD"),
    ("LD-YQ", "岩泉司法所", "station", "LD"),
    ("LD-WX", "万象司法所", "station", "LD"),
    ("LD-BY", "白云司法所", "station", "LD"),
)
STATIONS = tuple(o[0] for o in OFFICES if o[2] == "station")
SURNAMES = "张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗"
ORDINALS = "甲乙丙丁戊己庚辛壬癸"
NUMERALS = "一二三四五六七八九十"
# Recipes that broke the rules are 严管; the rest alternate 普管 and 宽管.
STRICT = {"walk_out", "drive_out", "victim", "school", "strap"}
GROUND = {
    "walk_out": "left_without_approval",
    "drive_out": "left_without_approval",
    "victim": "prohibition_breach",
    "school": "prohibition_breach",
    "strap": "admin_penalty",
}


# Leave besides the trip to 青田, so the leave list has one of each: (recipe, start and end
# in days from the demo's start, destination). The second ended yesterday and was never
# reported back (逾期未销假); neither touches the first twelve hours the fleet plays.
MORE_LEAVE = (
    ("battery", 2, 4, lishui.JINYUN),
    ("offline", -3, -1, lishui.SONGYANG),
)


def _officer(n: int, office: str, role: str = "officer") -> dict[str, Any]:
    oid = f"{office}-{n:02d}"
    surname = SURNAMES[(n * 7 + 3) % len(SURNAMES)]
    return {
        "id": oid,
        "name": f"{surname}某{NUMERALS[n % len(NUMERALS)]}",
        "phone": f"1390000{n:04d}",
        "email": f"{oid.lower()}@example.org",
        "role": role,
    }


def _staff(sc: Scenario, recipes: list[str]) -> None:
    """Offices and officers, and every person's name, level, station and responsible
    officer, with a monitoring order for each tag or wristband wearer."""
    n = 0
    for oid, name, kind, parent in OFFICES:
        staff = [_officer(n := n + 1, oid, "head")]
        if kind == "station":
            staff += [_officer(n := n + 1, oid), _officer(n := n + 1, oid)]
        sc.offices.append(
            {
                "id": oid,
                "name": name,
                "kind": kind,
                "parent": parent,
                "duty_phone": f"0578-000{len(sc.offices) + 1:04d}",
                "duty_email": f"duty-{oid.lower()}@example.org",
                "officers": staff,
            }
        )
    officers = {o["id"]: [x["id"] for x in o["officers"][1:]] for o in sc.offices}
    county_head = next(o["officers"][0]["name"] for o in sc.offices if o["kind"] == "county")
    today = datetime.fromtimestamp(sc.start / 1000, TZ).date()
    for k, (person, recipe) in enumerate(zip(sc.people, recipes, strict=True)):
        station = STATIONS[k % len(STATIONS)]
        for which, first, last, where in MORE_LEAVE:
            if recipe == which:
                person.leaves.append((sc.start + first * DAY, sc.start + last * DAY, (where,)))
        person.profile = {
            "name": f"{SURNAMES[k % len(SURNAMES)]}某{ORDINALS[k // len(SURNAMES) % 10]}",
            "level": "strict" if recipe in STRICT else ("normal", "lenient")[k % 2],
            "office": station,
            "officer": officers[station][k // len(STATIONS) % 2],
        }
        if any(d.kind == "tag" for d in person.devices):
            # Every fifth order ends within the week: the reminder and the warning show.
            starts = today - timedelta(days=85 if k % 5 == 4 else 20 + k % 30)
            person.profile["orders"] = [
                {
                    "ground": GROUND.get(recipe, "refused_report_warned"),
                    "approved_by": county_head,
                    "from": starts.isoformat(),
                    "to": add_months(starts, 3).isoformat(),
                }
            ]


def demo_scenario(
    n_tags: int, seed: int = 1, start_ms: int | None = None, hours: float = 12
) -> Scenario:
    start = start_ms if start_ms is not None else time.time_ns() // 1_000_000
    sc = Scenario(start, start + int(hours * H))
    demo = _Demo(np.random.default_rng(seed), sc)
    recipes = []
    for k in range(n_tags):
        role = ROLES[k] if k < len(ROLES) else _Demo.routine
        role(demo, f"S{k + 1:03d}", f"T{k + 1:03d}")
        recipes.append(role.__name__)
    _staff(sc, recipes)
    return sc


def build_demo(
    n_tags: int, seed: int = 1, start_ms: int | None = None, hours: float = 12
) -> tuple[dict[str, Any], dict[str, Any], FleetPlan]:
    """(zones.geojson, roster.json, fleet plan) for `n_tags` tags, starting now (or at
    `start_ms`) and planned for `hours`; after that each tag stays where it ended up."""
    sc = demo_scenario(n_tags, seed, start_ms, hours)
    devices = tuple(d for p in sc.people for d in p.devices)
    return sc.zones_doc(), sc.roster_doc(), FleetPlan(sc.start, devices)


def write_demo(out: Path, zones: dict[str, Any], roster: dict[str, Any]) -> None:
    """zones.geojson and roster.json into `out`, for `fencewatch load`."""
    write_setup(out, zones, roster)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, metavar="OUT_DIR")
    parser.add_argument("--tags", type=int, default=36)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=60, help="pings to record (60)")
    parser.add_argument("--start", default=None, help="ISO time the demo starts (default now)")
    args = parser.parse_args(argv)
    start = None
    if args.start:
        parsed = datetime.fromisoformat(args.start)
        start = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=TZ)).timestamp() * 1000)
    sc = demo_scenario(args.tags, args.seed, start, args.minutes / 60)
    write(args.out, sc.render(args.seed))
    print(f"demo with {args.tags} tags written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
