"""`fencewatch load SCENARIO_DIR`: zones.geojson and roster.json (spec 4.2) into the database.

Everything is upserted by id in one transaction, so loading twice leaves the same rows
and a bad scenario changes nothing. A roster lists each person's current devices: a
device listed elsewhere moves to this person, and a device no longer listed is unassigned
(the assignment history keeps both). Leave in a roster is recorded as approved; one with a
weekly `schedule` is a recurring permit. A roster may also carry the centre's people
(fencewatch.scenario.Center): its offices and officers, upserted by id, each person's
responsible officer, and monitoring orders, each recorded once.

Afterwards a running `fencewatch serve` is told to reload its rules (best effort: a
service that misses it picks the changes up on its next reload or restart).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import redis

from alerts.feed import ENDED
from fencewatch import embedded, servers
from fencewatch.channels import channel as scoped
from fencewatch.config import Settings
from fencewatch.scenario import (
    Center,
    ScenarioError,
    check_folder,
    read_center,
    read_checkin_schedules,
    read_roster,
)
from fencewatch.servers import run_with_pool
from geofence.model import Roster, Supervisee, ZoneDef
from geofence.together import PROTECTED_PREFIX
from geofence.zones import ZoneError, parse_feature_collection
from storage.db import Conn
from storage.repo import access as access_repo
from storage.repo import leave as leave_repo
from storage.repo import offices as offices_repo
from storage.repo import orders as orders_repo
from storage.repo import people as people_repo
from storage.repo import proximity as proximity_repo
from storage.repo import zones as zones_repo
from storage.rules import RULES_CHANNEL
from supervision import checkins
from supervision.checkin_rules import Schedule

FILES = ("zones.geojson", "roster.json")


def _read_zones(path: Path) -> list[tuple[ZoneDef, dict[str, Any]]]:
    """Zones with the features they came from, which are kept as each zone's source."""
    doc = msgspec.json.decode(path.read_bytes())
    zones = parse_feature_collection(doc)
    return list(zip(zones, doc["features"], strict=True))


def _read(
    scenario_dir: Path,
) -> tuple[list[tuple[ZoneDef, dict[str, Any]]], Roster, Center, dict[str, Schedule]]:
    try:
        check_folder(scenario_dir, FILES)
    except ScenarioError as exc:
        raise ScenarioError(f"{scenario_dir}: {exc}") from None
    try:
        zones = _read_zones(scenario_dir / "zones.geojson")
    except (ZoneError, msgspec.DecodeError) as exc:
        raise ScenarioError(f"zones.geojson: {exc}") from None
    try:
        roster = read_roster(scenario_dir / "roster.json")
        center = read_center(scenario_dir / "roster.json")
        schedules = read_checkin_schedules(scenario_dir / "roster.json")
    except (ScenarioError, msgspec.DecodeError) as exc:
        raise ScenarioError(f"roster.json: {exc}") from None
    seen: set[str] = set()
    worn_by: dict[str, str] = {}
    for person in roster.supervisees:
        if person.id in seen:
            raise ScenarioError(f"roster.json: supervisee {person.id} is listed twice")
        seen.add(person.id)
        for device in person.devices:
            other = worn_by.setdefault(device.id, person.id)
            if other != person.id:
                raise ScenarioError(
                    f"roster.json: device {device.id} is listed for both {other} and {person.id}"
                )
    return zones, roster, center, schedules


async def _load_offices(conn: Conn, center: Center) -> None:
    """Offices, then their officers, then each office's head (who must exist first)."""
    for heads in (False, True):
        for office in center.offices:
            await offices_repo.upsert_office(
                conn,
                office.id,
                office.name,
                office.kind,
                office.parent,
                office.head if heads else None,
                office.duty_phone,
                office.duty_email,
            )
            for officer in () if heads else office.officers:
                await offices_repo.upsert_officer(
                    conn,
                    officer.id,
                    officer.name,
                    office.id,
                    officer.phone,
                    officer.role,
                    officer.email,
                )


async def _load_orders(conn: Conn, center: Center) -> None:
    """Each monitoring order not yet recorded (none of the person's orders overlaps it)."""
    for supervisee, orders in center.orders.items():
        for order in orders:
            if await orders_repo.overlapping_orders(
                conn, supervisee, order.starts_on, order.ends_on
            ):
                continue
            await orders_repo.insert_order(
                conn,
                supervisee,
                ground=order.ground,
                approved_by=order.approved_by,
                starts_on=order.starts_on,
                ends_on=order.ends_on,
                decided_by="fencewatch load",
            )


async def _check_references(conn: Conn, people: list[Supervisee]) -> None:
    """Fail on the first person naming a zone or an office that cannot be used."""
    kinds = await zones_repo.zone_kinds(conn)
    offices = await offices_repo.office_ids(conn)
    for person in people:
        errors = zones_repo.check_zone_references(
            kinds,
            jurisdiction=person.jurisdiction,
            exclusion=person.exclusion,
            home=person.home,
            destinations=[d for leave in person.leaves for d in leave.destinations],
            workplace=person.workplace if isinstance(person.workplace, str) else None,
        )
        if person.office is not None and person.office not in offices:
            errors.append(f"office {person.office!r} does not exist")
        if errors:
            raise ScenarioError(f"roster.json: supervisee {person.id}: {'; '.join(errors)}")


async def _load_proximity(conn: Conn, roster: Roster) -> None:
    """No-contact orders (each person named must be a supervisee, loaded now or before)
    and the gathering rule; a roster without `gathering` leaves the one in force."""
    named = sorted({p for order in roster.no_contact for p in order.people})
    known = await proximity_repo.known_supervisees(conn, named)
    for order in roster.no_contact:
        unknown = [p for p in order.people if p not in known]
        if unknown:
            raise ScenarioError(
                f"roster.json: no_contact {order.id}: no such supervisee {', '.join(unknown)}"
            )
    await proximity_repo.upsert_no_contact(conn, roster.no_contact)
    await _load_protected(conn, roster)
    if roster.gathering is not None:
        await proximity_repo.set_gathering(conn, roster.gathering)


async def _load_protected(conn: Conn, roster: Roster) -> None:
    """Protected persons: each protects a supervisee (loaded now or before) and carries a
    phone no supervisee wears."""
    if not roster.protected:
        return
    known = await proximity_repo.known_supervisees(conn, [p.supervisee for p in roster.protected])
    worn = await proximity_repo.devices_in_use(conn, [p.device for p in roster.protected])
    for p in roster.protected:
        if p.supervisee not in known:
            raise ScenarioError(f"roster.json: protected {p.id}: no such supervisee {p.supervisee}")
        if p.device.id in worn:
            raise ScenarioError(
                f"roster.json: protected {p.id}: device {p.device.id} is (or reports as)"
                " a supervisee's"
            )
    await proximity_repo.upsert_protected(conn, roster.protected)


async def load_scenario(pool: asyncpg.Pool, scenario_dir: Path) -> dict[str, int]:
    """Import the scenario; returns how many of each thing it holds."""
    zones, roster, center, schedules = _read(scenario_dir)
    people = roster.supervisees
    counts = {
        "zones": len(zones),
        "supervisees": len(people),
        "devices": sum(len(s.devices) for s in people),
        "leaves": sum(len(s.leaves) for s in people),
    }
    if roster.no_contact:
        counts["no-contact orders"] = len(roster.no_contact)
    if roster.protected:
        counts["protected persons"] = len(roster.protected)
    if center.offices:
        counts["offices"] = len(center.offices)
        counts["officers"] = sum(len(o.officers) for o in center.offices)
    if center.orders:
        counts["orders"] = sum(len(orders) for orders in center.orders.values())
    if schedules:
        counts["check-in schedules"] = len(schedules)
    # One statement cannot upsert an id twice: an id listed twice is stored once, as listed
    # last, which is what upserting the listings one by one came to.
    unique_zones = {zone.id: (zone, source) for zone, source in zones}
    devices = {device.id: device for person in people for device in person.devices}
    wearers = {device.id: person.id for person in people for device in person.devices}
    leaves = {leave.id: (person.id, leave) for person in people for leave in person.leaves}
    async with pool.acquire() as conn, conn.transaction():
        await zones_repo.upsert_zones(conn, unique_zones.values())
        try:
            await _load_offices(conn, center)
        except asyncpg.IntegrityConstraintViolationError as exc:
            detail = getattr(exc, "detail", None) or exc
            raise ScenarioError(f"roster.json offices: {detail}") from None
        await _check_references(conn, people)
        try:
            await people_repo.load_supervisees(conn, people)
            await people_repo.assign_officers(conn, center.officers)
            # Unlike `POST /devices/{id}/assign`, no monitoring order is required for a
            # tag here: spec 4.2 rosters carry no orders (a scenario's tags would all be
            # refused), and loading is the operator's bulk import, not a decision to fit
            # one. Orders for loaded people are recorded through the API.
            await people_repo.upsert_devices(conn, list(devices.values()))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ScenarioError(f"roster.json: {getattr(exc, 'detail', None) or exc}") from None
        await people_repo.reassign_devices(conn, wearers, [person.id for person in people])
        await leave_repo.load_leaves(conn, leaves.values())
        await _load_orders(conn, center)
        await _load_proximity(conn, roster)
        for supervisee, schedule in schedules.items():
            await checkins.put_schedule(
                conn, f"supervisee:{supervisee}", schedule, "fencewatch load"
            )
        await access_repo.audit(
            conn, "fencewatch load", None, "scenario.load", str(scenario_dir), counts
        )
        # Fresh statistics: right after a bulk load the planner would otherwise guess (the
        # monthly report over 100,000 people ran for minutes on a fresh load's guesses).
        await conn.execute("ANALYZE supervisees, devices, device_assignments, leaves, zones")
    return counts


def _service_redis(settings: Settings) -> str | None:
    """The Redis a running service listens on: the configured one, else the embedded one
    if it is running (never started here just to be told)."""
    if settings.redis_url:
        return settings.redis_url
    # fencewatch.servers keeps this record for the embedded Redis it shares between
    # processes (`_shared`); a live process there is the service's Redis.
    datadir = settings.data_dir / "redis"
    running = servers._read(datadir / "fencewatch-server.json")
    if running is None or servers._process(running) is None:
        return None
    return embedded.redis_url(datadir, running.port)


def tell_service(settings: Settings, channel: str, message: bytes, what: str) -> int | None:
    """Publish `message` on `channel` of the running service's Redis; returns how many
    listeners got it, None when there was no Redis to tell or telling failed. Never raises:
    the command's own work has succeeded either way."""
    return _on_service_redis(
        settings, lambda client: int(client.publish(scoped(client, channel), message)), what
    )


def allow_protected(settings: Settings, protections: list[str]) -> None:
    """The protections in force after a load have their phones' sightings taken, under an
    id whose protection once ended too (ingest.forget)."""
    if protections:
        people = [PROTECTED_PREFIX + p for p in protections]
        _on_service_redis(
            settings,
            lambda client: int(client.srem(ENDED, *people)),
            "to take the protected persons' phones again",
        )


def _on_service_redis(
    settings: Settings, act: Callable[[redis.Redis], int], what: str
) -> int | None:
    try:
        url = _service_redis(settings)
        if url is None:
            return None
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            return act(client)
        finally:
            client.close()
    except Exception as exc:  # best effort, whatever went wrong
        print(f"could not tell a running service {what} ({exc})", file=sys.stderr)
        return None


def notify_service(settings: Settings) -> int | None:
    """Publish `null` ("reload everyone") on the rules channel (`tell_service`)."""
    listeners = tell_service(
        settings,
        RULES_CHANNEL,
        b"null",
        "to reload; it will use the loaded rules after its next reload or restart",
    )
    if listeners:
        print(f"fencewatch load: told {listeners} running service(s) to reload", file=sys.stderr)
    return listeners


async def _load(pool: asyncpg.Pool, scenario_dir: Path) -> tuple[dict[str, int], list[str]]:
    """What was loaded, and the protections in force after it."""
    counts = await load_scenario(pool, scenario_dir)
    async with pool.acquire() as conn:
        return counts, [p.id for p in await proximity_repo.load_protected(conn)]


def main(scenario_dir: Path) -> int:
    try:
        counts, protections = run_with_pool(lambda pool: _load(pool, scenario_dir))
    except ScenarioError as exc:
        print(f"fencewatch load: {exc}", file=sys.stderr)
        return 2
    print("loaded " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    settings = Settings.from_env()
    allow_protected(settings, protections)
    notify_service(settings)
    return 0
