"""`fencewatch load SCENARIO_DIR`: zones.geojson and roster.json (spec 4.2) into the database.

Everything is upserted by id in one transaction, so loading twice leaves the same rows
and a bad scenario changes nothing. A roster lists each person's current devices: a
device listed elsewhere moves to this person, and a device no longer listed is unassigned
(the assignment history keeps both). Leave in a roster is recorded as approved; one with a
weekly `schedule` is a recurring permit.

Afterwards a running `fencewatch serve` is told to reload its rules (best effort: a
service that misses it picks the changes up on its next reload or restart).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import redis

from fencewatch import servers
from fencewatch.config import Settings
from fencewatch.scenario import ScenarioError, read_roster
from fencewatch.servers import run_with_pool
from geofence.model import Roster, ZoneDef
from geofence.zones import ZoneError, parse_feature_collection
from storage import repo
from storage.rules import RULES_CHANNEL


def _read_zones(path: Path) -> list[tuple[ZoneDef, dict[str, Any]]]:
    """Zones with the features they came from, which are kept as each zone's source."""
    doc = msgspec.json.decode(path.read_bytes())
    zones = parse_feature_collection(doc)
    return list(zip(zones, doc["features"], strict=True))


def _read(scenario_dir: Path) -> tuple[list[tuple[ZoneDef, dict[str, Any]]], Roster]:
    for name in ("zones.geojson", "roster.json"):
        if not (scenario_dir / name).is_file():
            raise ScenarioError(f"{scenario_dir / name} is missing")
    try:
        zones = _read_zones(scenario_dir / "zones.geojson")
    except (ZoneError, msgspec.DecodeError) as exc:
        raise ScenarioError(f"zones.geojson: {exc}") from None
    try:
        roster = read_roster(scenario_dir / "roster.json")
    except (ScenarioError, msgspec.DecodeError) as exc:
        raise ScenarioError(f"roster.json: {exc}") from None
    worn_by: dict[str, str] = {}
    for person in roster.supervisees:
        for device in person.devices:
            other = worn_by.setdefault(device.id, person.id)
            if other != person.id:
                raise ScenarioError(
                    f"roster.json: device {device.id} is listed for both {other} and {person.id}"
                )
    return zones, roster


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def load_scenario(pool: asyncpg.Pool, scenario_dir: Path) -> dict[str, int]:
    """Import the scenario; returns how many of each thing it holds."""
    zones, roster = _read(scenario_dir)
    counts = {
        "zones": len(zones),
        "supervisees": len(roster.supervisees),
        "devices": sum(len(s.devices) for s in roster.supervisees),
        "leaves": sum(len(s.leaves) for s in roster.supervisees),
    }
    async with pool.acquire() as conn, conn.transaction():
        for zone, source in zones:
            await repo.upsert_zone(conn, zone, source)
        for person in roster.supervisees:
            errors = await repo.zone_reference_errors(
                conn,
                jurisdiction=person.jurisdiction,
                exclusion=person.exclusion,
                home=person.home,
                destinations=[d for leave in person.leaves for d in leave.destinations],
            )
            if errors:
                raise ScenarioError(f"roster.json: supervisee {person.id}: {'; '.join(errors)}")
            try:
                await repo.load_supervisee(conn, person)
                # Unlike `POST /devices/{id}/assign`, no monitoring order is required for a
                # tag here: spec 4.2 rosters carry no orders (a scenario's tags would all be
                # refused), and loading is the operator's bulk import, not a decision to fit
                # one. Orders for loaded people are recorded through the API.
                for device in person.devices:
                    await repo.upsert_device(conn, device)
                    await repo.assign_device(conn, device.id, person.id)
            except asyncpg.IntegrityConstraintViolationError as exc:
                reason = getattr(exc, "detail", None) or exc
                raise ScenarioError(f"roster.json: supervisee {person.id}: {reason}") from None
            await repo.unassign_other_devices(conn, person.id, [d.id for d in person.devices])
            for leave in person.leaves:
                await repo.upsert_leave(
                    conn,
                    leave.id,
                    person.id,
                    _utc(leave.start),
                    _utc(leave.end),
                    leave.destinations,
                    returned_at=None if leave.returned_at is None else _utc(leave.returned_at),
                    kind="permit" if leave.schedule else "leave",
                    schedule=leave.schedule,
                )
        await repo.audit(conn, "fencewatch load", None, "scenario.load", str(scenario_dir), counts)
    return counts


def _service_redis(settings: Settings) -> str | None:
    """The Redis a running service listens on: the configured one, else the embedded one
    if it is running (never started here just to be told)."""
    if settings.redis_url:
        return settings.redis_url
    # fencewatch.servers keeps this record for the embedded Redis it shares between
    # processes (`_shared`); a live process there is the service's Redis.
    running = servers._read(settings.data_dir / "redis" / "fencewatch-server.json")
    if running is None or servers._process(running) is None:
        return None
    return f"redis://127.0.0.1:{running.port}/0"


def notify_service(settings: Settings) -> int | None:
    """Publish `null` ("reload everyone") on the rules channel; returns how many listeners
    got it, None when there was no Redis to tell or telling failed. Never raises: the load
    itself has succeeded either way."""
    try:
        url = _service_redis(settings)
        if url is None:
            return None
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            listeners = int(client.publish(RULES_CHANNEL, b"null"))
        finally:
            client.close()
    except Exception as exc:  # best effort, whatever went wrong
        print(
            f"fencewatch load: could not tell a running service to reload ({exc});"
            " it will use the loaded rules after its next reload or restart",
            file=sys.stderr,
        )
        return None
    if listeners:
        print(f"fencewatch load: told {listeners} running service(s) to reload", file=sys.stderr)
    return listeners


def main(scenario_dir: Path) -> int:
    try:
        counts = run_with_pool(lambda pool: load_scenario(pool, scenario_dir))
    except ScenarioError as exc:
        print(f"fencewatch load: {exc}", file=sys.stderr)
        return 2
    print("loaded " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    notify_service(Settings.from_env())
    return 0
