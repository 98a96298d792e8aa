"""Read the rules in force (zones, supervisees, their current devices, approved leave and
recurring permits, heightened periods, no-contact orders and the gathering rule) from the
database into the engine's model."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, TypeVar

import msgspec

from fencewatch.timefmt import epoch_ms
from geofence.limits import heightened_problems
from geofence.model import DeviceRef, Heightened, Leave, Place, Roster, Supervisee, ZoneDef
from geofence.zones import parse_schedule
from storage.db import Conn
from storage.repo import proximity as proximity_repo

log = logging.getLogger("fencewatch.rules")

T = TypeVar("T")

# The Redis channel on which a change of these rules is announced (a JSON list of the
# supervisees concerned, or null for everyone); every `fencewatch serve` reloads on it.
RULES_CHANNEL = "fencewatch:rules"

# Rules that ended longer ago than this are not loaded: late fixes older than that are not
# judged against them.
_HISTORY = "interval '62 days'"


async def load_rules(conn: Conn, timezone: str) -> tuple[Roster, list[ZoneDef]]:
    # One object for each value many people share (zone ids and lists of them, offices,
    # levels, device kinds, CRS): asyncpg makes a new one for every row, copies the rules
    # would keep for as long as they are in force (45 MB of the benchmark's 100,000 people).
    shared: dict[Any, Any] = {}

    def one(value: T) -> T:
        return shared.setdefault(value, value)

    zones = [
        ZoneDef(
            id=one(r["id"]),
            kind=r["kind"],
            geometry=r["geometry"],
            name=r["name"],
            source_crs=r["source_crs"],
            schedule=parse_schedule(r["schedule"]),
            radius_m=r["radius_m"],
        )
        for r in await conn.fetch(
            "SELECT id, kind, name, geometry, source_crs, schedule, radius_m FROM zones"
        )
    ]
    devices: dict[str, list[DeviceRef]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT a.supervisee_id, d.id, d.kind, d.owntracks, d.osmand, d.jt808, d.crs"
        " FROM device_assignments a"
        " JOIN devices d ON d.id = a.device_id WHERE a.until IS NULL ORDER BY d.id"
    ):
        devices[r["supervisee_id"]].append(
            DeviceRef(
                r["id"], one(r["kind"]), r["owntracks"], r["osmand"], r["jt808"], one(r["crs"])
            )
        )
    leaves: dict[str, list[Leave]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT id, supervisee_id, starts_at, ends_at, destinations, returned_at, schedule"
        f" FROM leaves WHERE status = 'approved' AND ends_at > now() - {_HISTORY}"
        " ORDER BY starts_at, id"
    ):
        leaves[r["supervisee_id"]].append(
            Leave(
                start=epoch_ms(r["starts_at"]),
                end=epoch_ms(r["ends_at"]),
                destinations=one(tuple(map(one, r["destinations"]))),
                id=r["id"],
                returned_at=epoch_ms(r["returned_at"]) if r["returned_at"] else None,
                schedule=parse_schedule(r["schedule"]),
            )
        )
    people = [
        Supervisee(
            id=r["id"],
            jurisdiction=one(tuple(map(one, r["jurisdiction"]))),
            exclusion=one(tuple(map(one, r["exclusion"]))),
            home=one(r["home_zone"]),
            workplace=msgspec.convert(r["workplace"], str | Place | None),
            devices=tuple(devices.get(r["id"], ())),
            leaves=tuple(leaves.get(r["id"], ())),
            level=one(r["level"]),
            name=r["name"],
            office=one(r["office_id"]),
        )
        for r in await conn.fetch(
            "SELECT id, name, office_id, level, jurisdiction, exclusion, home_zone, workplace"
            " FROM supervisees WHERE status = 'active' ORDER BY id"
        )
    ]
    heightened = []
    for r in await conn.fetch(
        "SELECT id, name, starts_at, ends_at, policy,"
        " fencewatch_office_subtrees(offices) AS scope FROM heightened_periods"
        f" WHERE ends_at > now() - {_HISTORY} ORDER BY starts_at, id"
    ):
        # The API refuses such a period; one written around it would apply to everyone, so
        # it is left out (the base policies apply) rather than put where it could fail or
        # relax the rules for all.
        problems = heightened_problems(r["policy"])
        if problems:
            log.error("heightened period %s left out: %s", r["id"], "; ".join(problems))
            continue
        heightened.append(
            Heightened(
                start=epoch_ms(r["starts_at"]),
                end=epoch_ms(r["ends_at"]),
                name=r["name"],
                policy=r["policy"],
                offices=frozenset(r["scope"]),
            )
        )
    no_contact, gathering = await proximity_repo.load(conn)
    protected = await proximity_repo.load_protected(conn)
    roster = Roster(timezone, people, heightened, no_contact, gathering, protected)
    return roster, zones
