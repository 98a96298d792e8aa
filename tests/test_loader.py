"""`fencewatch load`: a scenario directory (spec 4.2) into a real PostgreSQL, idempotently,
then a word to the running service on Redis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
import psutil
import pytest
from redis.asyncio import Redis

from alerts.feed import SIGHTINGS, Feed
from fencewatch import servers
from fencewatch.channels import channel
from fencewatch.config import Settings
from fencewatch.loader import load_scenario, main, notify_service
from fencewatch.scenario import ScenarioError, read_roster, read_zones
from fencewatch.timefmt import epoch_ms
from geofence.engine import Engine
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from geofence.zones import parse_schedule
from ingest.forget import forget
from storage.db import open_pool
from storage.repo import proximity as proximity_repo
from storage.repo import zones as zones_repo
from storage.rules import RULES_CHANNEL, load_rules
from tests.kit import in_redis

# Leave next year, so that it is current whenever the test runs.
YEAR = datetime.now(UTC).year + 1


def _square(zone_id: str, kind: str, lon: float, lat: float, **props: Any) -> dict[str, Any]:
    d = 0.05
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d]]
    return {
        "type": "Feature",
        "properties": {"id": zone_id, "kind": kind, **props},
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
    }


ZONES = {
    "type": "FeatureCollection",
    "features": [
        _square("J1", "jurisdiction", 119.9, 28.45, name="莲都区"),
        _square("J2", "jurisdiction", 120.15, 28.15, crs="gcj02"),
        _square(
            "H1",
            "home",
            119.92,
            28.46,
            schedule=[{"days": [1, 2, 3], "from": "22:00", "to": "06:00"}],
        ),
        {
            "type": "Feature",
            "properties": {"id": "X1", "kind": "exclusion", "radius": 150},
            "geometry": {"type": "Point", "coordinates": [119.91, 28.45]},
        },
    ],
}
ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "A",
            "name": "张某",
            "jurisdiction": ["J1"],
            "exclusion": ["X1"],
            "home": "H1",
            "devices": ["TAG1", {"id": "PHONE7", "kind": "phone", "owntracks": "zhang/iphone"}],
            "leaves": [
                {
                    "from": f"{YEAR}-12-01T08:00:00+08:00",
                    "to": f"{YEAR}-12-03T20:00:00+08:00",
                    "destinations": ["J2"],
                }
            ],
        },
        {"id": "B", "jurisdiction": ["J1", "J2"], "devices": ["TAG2"], "level": "strict"},
    ],
}
TABLES = {
    "zones": "id, kind, name, geometry, source_crs, source, schedule, radius_m, properties",
    "supervisees": "id, name, office_id, level, jurisdiction, exclusion, home_zone, status",
    "devices": "id, kind, owntracks, model, created_at",
    "device_assignments": "id, device_id, supervisee_id, since, until",
    "leaves": "id, supervisee_id, kind, starts_at, ends_at, destinations, schedule, status,"
    " decided_at, returned_at",
}


def _write(directory: Path, zones: Any = ZONES, roster: Any = ROSTER) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "zones.geojson").write_bytes(msgspec.json.encode(zones))
    (directory / "roster.json").write_bytes(msgspec.json.encode(roster))
    return directory


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn)
    yield pool
    await pool.close()


async def _rows(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(r) for r in await pool.fetch(f"SELECT {columns} FROM {table} ORDER BY 1")]
        for table, columns in TABLES.items()
    }


async def test_loading_twice_leaves_the_same_rows(pool: asyncpg.Pool, tmp_path: Path) -> None:
    scenario = _write(tmp_path)
    counts = await load_scenario(pool, scenario)
    assert counts == {"zones": 4, "supervisees": 2, "devices": 3, "leaves": 1}
    first = await _rows(pool)
    assert [len(first[t]) for t in TABLES] == [4, 2, 3, 3, 1]
    assert await load_scenario(pool, scenario) == counts
    assert await _rows(pool) == first


async def test_the_demo_roster_brings_its_offices_officers_and_orders(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The demo's optional roster parts (fencewatch.scenario.Center): alerts route to named
    officers, every tag wearer has a monitoring order, and loading twice changes nothing."""
    from simulators.demo import build_demo, write_demo

    zones, roster, _ = build_demo(13)
    write_demo(tmp_path, zones, roster)
    counts = await load_scenario(pool, tmp_path)
    assert (counts["offices"], counts["officers"]) == (6, 14)
    assert counts["orders"] == 12  # everyone but the Traccar phone's owner
    assert await load_scenario(pool, tmp_path) == counts
    people = await pool.fetch(
        "SELECT s.id, s.name, s.office_id, o.name AS officer, o.office_id AS officer_office,"
        " (SELECT count(*) FROM monitoring_orders m WHERE m.supervisee_id = s.id) AS orders"
        " FROM supervisees s JOIN officers o ON o.id = s.officer_id ORDER BY s.id"
    )
    assert len(people) == 13
    assert all(p["name"] and "某" in p["name"] for p in people)
    assert all(p["officer_office"] == p["office_id"] for p in people)
    assert sum(p["orders"] for p in people) == 12
    # Escalation has somebody at every level: the station's head, the county's.
    heads = await pool.fetch(
        "SELECT o.kind, h.role FROM offices o JOIN officers h ON h.id = o.head_officer_id"
    )
    assert {(r["kind"], r["role"]) for r in heads} == {
        ("city", "head"),
        ("county", "head"),
        ("station", "head"),
    }


async def test_the_demo_roster_sets_its_check_in_schedules(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The demo's two phone-only people carry `checkins`: loading sets their schedules, as
    `PUT /supervisees/{id}/checkin-schedule` would; a broken one is refused, saying where."""
    from simulators.demo import build_demo, write_demo

    zones, roster, _ = build_demo(16)
    write_demo(tmp_path, zones, roster)
    counts = await load_scenario(pool, tmp_path)
    assert counts["check-in schedules"] == 2
    rows = await pool.fetch("SELECT * FROM checkin_schedules ORDER BY scope")
    assert [r["scope"] for r in rows] == ["supervisee:S015", "supervisee:S016"]
    assert all(len(r["times"]) == 3 and r["deadline_s"] == 300 for r in rows)
    assert rows[0]["updated_by"] == "fencewatch load"
    roster["supervisees"][14]["checkins"] = {"times": ["25:00"]}
    write_demo(tmp_path, zones, roster)
    with pytest.raises(ScenarioError, match=r"roster\.json: supervisee S015: checkins"):
        await load_scenario(pool, tmp_path)


async def test_a_roster_office_with_an_unknown_parent_is_refused(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    roster = {
        **ROSTER,
        "offices": [{"id": "ST9", "name": "某司法所", "kind": "station", "parent": "K9"}],
    }
    with pytest.raises(ScenarioError, match="offices"):
        await load_scenario(pool, _write(tmp_path, roster=roster))
    assert await pool.fetchval("SELECT count(*) FROM supervisees") == 0


def _plain(value: Any) -> Any:
    """Tuples and lists alike, as JSON has them."""
    return msgspec.json.decode(msgspec.json.encode(value))


async def test_loaded_rules_read_back_as_the_scenario_says(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    scenario = _write(tmp_path)
    await load_scenario(pool, scenario)
    async with pool.acquire() as conn:
        roster, zones = await load_rules(conn, "Asia/Shanghai")
    expected = [
        msgspec.structs.replace(p, devices=tuple(sorted(p.devices, key=lambda d: d.id)))
        for p in read_roster(scenario / "roster.json").supervisees
    ]
    assert _plain(roster.supervisees) == _plain(expected)
    assert _plain(sorted(zones, key=lambda z: z.id)) == _plain(
        sorted(read_zones(scenario / "zones.geojson"), key=lambda z: z.id)
    )
    stored = await pool.fetchrow("SELECT source, source_crs FROM zones WHERE id = 'J2'")
    assert (stored["source"], stored["source_crs"]) == (ZONES["features"][1], "gcj02")


async def test_a_reload_moves_devices_and_keeps_the_history(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await load_scenario(pool, _write(tmp_path / "v1"))
    a, b = (dict(p) for p in ROSTER["supervisees"])
    a["devices"] = []
    b["devices"] = ["TAG2", "TAG1"]
    await load_scenario(pool, _write(tmp_path / "v2", roster={"supervisees": [a, b]}))
    rows = await pool.fetch(
        "SELECT device_id, supervisee_id, until IS NULL AS current FROM device_assignments"
        " ORDER BY device_id, id"
    )
    assert [tuple(r) for r in rows] == [
        ("PHONE7", "A", False),
        ("TAG1", "A", False),
        ("TAG1", "B", True),
        ("TAG2", "B", True),
    ]


async def _assignments(pool: asyncpg.Pool) -> list[tuple[str, str, bool]]:
    rows = await pool.fetch(
        "SELECT device_id, supervisee_id, until IS NULL AS current FROM device_assignments"
        " ORDER BY device_id, id"
    )
    return [tuple(r) for r in rows]


async def test_people_left_out_of_a_reload_keep_their_devices(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await load_scenario(pool, _write(tmp_path / "v1"))
    b = {**ROSTER["supervisees"][1], "devices": ["TAG2", "PHONE7"]}
    await load_scenario(pool, _write(tmp_path / "v2", roster={"supervisees": [b]}))
    assert await _assignments(pool) == [
        ("PHONE7", "A", False),
        ("PHONE7", "B", True),
        ("TAG1", "A", True),
        ("TAG2", "B", True),
    ]


async def test_devices_passed_round_all_at_once_each_keep_their_history(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Everyone hands their tag to the next person, in one reload."""
    people = [f"P{i:02d}" for i in range(50)]

    def roster(shift: int) -> dict[str, Any]:
        return {
            "supervisees": [
                {"id": p, "jurisdiction": ["J1"], "devices": [f"T{(i + shift) % 50:02d}"]}
                for i, p in enumerate(people)
            ]
        }

    await load_scenario(pool, _write(tmp_path / "v1", roster=roster(0)))
    await load_scenario(pool, _write(tmp_path / "v2", roster=roster(1)))
    assert await _assignments(pool) == [
        row
        for i in range(50)
        for row in [(f"T{i:02d}", people[i], False), (f"T{i:02d}", people[i - 1], True)]
    ]


async def test_an_id_listed_twice_is_stored_as_listed_last(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    j1 = ZONES["features"][0]
    renamed = {**j1, "properties": {**j1["properties"], "name": "莲都"}}
    zones = {**ZONES, "features": [*ZONES["features"], renamed]}
    a, b = (dict(p) for p in ROSTER["supervisees"])
    leave = {**a["leaves"][0], "id": "L1"}
    a.update(devices=["TAG1", "TAG1"], leaves=[leave, {**leave, "destinations": []}])
    b["leaves"] = [{**leave, "to": f"{YEAR}-12-02T20:00:00+08:00"}]
    scenario = _write(tmp_path, zones=zones, roster={"supervisees": [a, b]})
    await load_scenario(pool, scenario)
    first = await _rows(pool)
    assert await pool.fetchval("SELECT name FROM zones WHERE id = 'J1'") == "莲都"
    assert await _assignments(pool) == [("TAG1", "A", True), ("TAG2", "B", True)]
    [stored] = first["leaves"]
    assert stored[:2] == ("L1", "B") and stored[4] == datetime(YEAR, 12, 2, 12, tzinfo=UTC)
    await load_scenario(pool, scenario)
    assert await _rows(pool) == first


def _without(key: str, value: Any) -> dict[str, Any]:
    people = [dict(p) for p in ROSTER["supervisees"]]
    people[1][key] = value
    return {"supervisees": people}


BAD = [
    ({"roster": _without("jurisdiction", ["J1", "NOPE"])}, "jurisdiction zone 'NOPE' does not"),
    ({"roster": _without("exclusion", ["J2"])}, "cannot be used as exclusion"),
    ({"roster": _without("devices", ["TAG1"])}, "TAG1 is listed for both A and B"),
    ({"roster": _without("office", "NOWHERE")}, "supervisee B: office 'NOWHERE' does not exist"),
    ({"roster": {"supervisees": [*ROSTER["supervisees"], {"id": "A"}]}}, "A is listed twice"),
    (
        {"roster": _without("devices", [{"id": "PHONE8", "owntracks": "zhang/iphone"}])},
        "Key (owntracks)=(zhang/iphone) already exists",
    ),
    ({"roster": _without("level", "severe")}, "level must be one of"),
    ({"roster": {"people": []}}, "supervisees list"),
    ({"zones": {"type": "FeatureCollection", "features": [{"type": "Feature"}]}}, "zones.geojson"),
]


@pytest.mark.parametrize(("files", "reason"), BAD)
async def test_a_bad_scenario_changes_nothing(
    pool: asyncpg.Pool, tmp_path: Path, files: dict[str, Any], reason: str
) -> None:
    scenario = _write(tmp_path, **files)
    with pytest.raises(ScenarioError) as raised:
        await load_scenario(pool, scenario)
    assert reason in str(raised.value)
    assert all(not rows for rows in (await _rows(pool)).values())


@pytest.mark.parametrize(("files", "reason"), BAD)
async def test_a_bad_reload_changes_nothing(
    pool: asyncpg.Pool, tmp_path: Path, files: dict[str, Any], reason: str
) -> None:
    """The bad scenario would also change what the good one stored: rename a zone, move a
    device, add leave."""
    a, b = (dict(p) for p in ROSTER["supervisees"])
    a.update(name="", devices=[], leaves=[])
    b["devices"] = ["TAG1", "TAG2"]
    zones = {**ZONES, "features": [_square("J1", "jurisdiction", 119.9, 28.45, name="旧")]}
    zones["features"] += ZONES["features"][1:]
    await load_scenario(pool, _write(tmp_path / "good", zones, {"supervisees": [a, b]}))
    before = await _rows(pool)
    with pytest.raises(ScenarioError, match=re.escape(reason)):
        await load_scenario(pool, _write(tmp_path / "bad", **files))
    assert await _rows(pool) == before


async def test_unreadable_files_are_scenario_errors(pool: asyncpg.Pool, tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text("{}")
    with pytest.raises(ScenarioError, match=r"missing roster\.json"):
        await load_scenario(pool, tmp_path)
    scenario = _write(tmp_path)
    (scenario / "zones.geojson").write_text("{not json")
    with pytest.raises(ScenarioError, match=r"zones\.geojson: JSON is malformed"):
        await load_scenario(pool, scenario)


async def test_the_command_loads_or_exits_2_with_the_reason(
    pg_dsn: str,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    # In a thread: the command runs its own event loop, as it does from the shell.
    assert await asyncio.to_thread(main, _write(tmp_path / "good")) == 0
    assert capsys.readouterr().out == "loaded 4 zones, 2 supervisees, 3 devices, 1 leaves\n"
    bad = _write(tmp_path / "bad", roster=_without("home", "J1"))
    assert await asyncio.to_thread(main, bad) == 2
    assert "cannot be used as home" in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM supervisees") == 2


async def test_a_leave_with_weekly_hours_loads_as_a_recurring_permit(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    a = dict(ROSTER["supervisees"][0])
    schedule = [{"days": [6, 7], "from": "09:00", "to": "21:00"}]
    a["leaves"] = [{**a["leaves"][0], "id": "A-permit", "schedule": schedule}]
    scenario = _write(tmp_path, roster={"supervisees": [a]})
    await load_scenario(pool, scenario)
    row = await pool.fetchrow("SELECT kind, schedule, status FROM leaves WHERE id = 'A-permit'")
    assert (row["kind"], row["schedule"], row["status"]) == ("permit", schedule, "approved")
    async with pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    [expected] = read_roster(scenario / "roster.json").supervisees
    assert roster.supervisees[0].leaves == expected.leaves
    assert roster.supervisees[0].leaves[0].schedule == parse_schedule(schedule)


async def _subscribed(url: str) -> Any:
    client = Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel(client, RULES_CHANNEL))
    return client, pubsub


async def _next_message(pubsub: Any) -> Any:
    for _ in range(100):  # waits up to 10 s; returns as soon as it comes
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            return message["data"]
    return None


async def test_the_load_tells_a_running_service_to_reload(
    pg_dsn: str,
    pool: asyncpg.Pool,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("FENCEWATCH_REDIS_URL", redis_url)
    client, pubsub = await _subscribed(redis_url)
    try:
        assert await asyncio.to_thread(main, _write(tmp_path)) == 0
        assert await _next_message(pubsub) == b"null"  # reload everyone
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert "running service(s) to reload" in capsys.readouterr().err


async def test_a_protection_ended_and_loaded_again_takes_the_phone_again(
    pg_dsn: str,
    pool: asyncpg.Pool,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("FENCEWATCH_REDIS_URL", redis_url)
    device = {"id": "V1", "kind": "phone", "owntracks": "victim/phone"}
    roster = {**ROSTER, "protected": [{"id": "PP1", "supervisee": "A", "device": device}]}
    redis = Redis.from_url(redis_url)
    try:
        await forget(redis, ["PP1"])  # an earlier protection under that id, ended
        assert await asyncio.to_thread(main, _write(tmp_path, roster=roster)) == 0
        async with pool.acquire() as conn:
            people, zones = await load_rules(conn, "Asia/Shanghai")
        where = (28.4444444, 119.9444444)
        seen = Sighting("protected:PP1", "V1", *where, 10.0, epoch_ms(datetime.now(UTC)))
        await Feed(redis).publish((), [], Engine(RuleSet(people, zones)), [seen])
        assert await in_redis(redis, *where) == {SIGHTINGS}
    finally:
        await redis.aclose()


async def test_the_load_succeeds_when_the_service_cannot_be_told(
    pg_dsn: str,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("FENCEWATCH_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    assert await asyncio.to_thread(main, _write(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert out.startswith("loaded 4 zones")
    assert "could not tell a running service to reload" in err
    assert await pool.fetchval("SELECT count(*) FROM supervisees") == 2


async def test_an_embedded_redis_is_told_only_while_it_runs(redis_url: str, tmp_path: Path) -> None:
    """With no FENCEWATCH_REDIS_URL the service runs an embedded Redis, found through the
    record fencewatch.servers keeps; the test's Redis plays it."""
    settings = Settings(data_dir=tmp_path)
    assert await asyncio.to_thread(notify_service, settings) is None  # none was started
    record = tmp_path / "redis" / "fencewatch-server.json"
    record.parent.mkdir()
    me = psutil.Process()
    port = urlsplit(redis_url).port or 6379
    running = servers._Running(me.pid, me.create_time(), port, [me.pid])
    record.write_bytes(msgspec.json.encode(running))
    # The embedded Redis is told on its database 0, as the service there listens.
    client, pubsub = await _subscribed(f"redis://127.0.0.1:{port}/0")
    try:
        assert (await asyncio.to_thread(notify_service, settings) or 0) >= 1
        assert await _next_message(pubsub) == b"null"
    finally:
        await pubsub.aclose()
        await client.aclose()
    # A record left by a server that is gone is not a running one.
    record.write_bytes(msgspec.json.encode(msgspec.structs.replace(running, started=1.0)))
    assert await asyncio.to_thread(notify_service, settings) is None


async def test_no_contact_orders_and_the_gathering_rule_load_and_read_back(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    people = {"no_contact": [{"id": "NC1", "people": ["A", "B"], "confirm_s": 120}]}
    gathering = {"gathering": {"size": 4, "radius_m": 80}}
    await load_scenario(pool, _write(tmp_path / "1", roster={**ROSTER, **people, **gathering}))
    # Loaded again with a wider distance and no gathering: the order changes, the rule stays.
    wider = {"no_contact": [{"id": "NC1", "people": ["A", "B"], "distance_m": 300}]}
    await load_scenario(pool, _write(tmp_path / "2", roster={**ROSTER, **wider}))
    async with pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    assert _plain(roster.no_contact) == [
        {"id": "NC1", "people": ["A", "B"], "distance_m": 300.0, "confirm_s": 300}
    ]
    assert _plain(roster.gathering) == {"size": 4, "radius_m": 80.0, "hold_s": 1200}
    stranger = {"no_contact": [{"id": "NC2", "people": ["A", "NOBODY"]}]}
    with pytest.raises(ScenarioError, match="no_contact NC2: no such supervisee NOBODY"):
        await load_scenario(pool, _write(tmp_path / "3", roster={**ROSTER, **stranger}))


async def test_a_workplace_loads_as_a_place_or_a_zone_and_reads_back(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    a, b = (dict(p) for p in ROSTER["supervisees"])  # type: ignore[attr-defined]
    a["workplace"] = {"lat": 28.44, "lon": 119.93, "radius_m": 150, "name": "五金厂"}
    b["workplace"] = "H1"
    await load_scenario(pool, _write(tmp_path / "1", roster={**ROSTER, "supervisees": [a, b]}))
    async with pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
        assert _plain([p.workplace for p in roster.supervisees]) == [
            {"lat": 28.44, "lon": 119.93, "radius_m": 150.0, "name": "五金厂"},
            "H1",
        ]
        # The zone is in use: it is named as B's workplace.
        assert ("supervisee B", "workplace") in await zones_repo.zone_references(conn, "H1")
    # A roster that no longer names it: no workplace.
    await load_scenario(pool, _write(tmp_path / "2"))
    async with pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
    assert [p.workplace for p in roster.supervisees] == [None, None]
    b["workplace"] = "NOWHERE"
    with pytest.raises(ScenarioError, match="supervisee B: workplace zone 'NOWHERE' does not"):
        await load_scenario(pool, _write(tmp_path / "3", roster={**ROSTER, "supervisees": [a, b]}))


async def test_protected_persons_load_and_read_back_and_are_purged_with_their_order(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    device = {"id": "V1", "kind": "phone", "owntracks": "victim/phone"}
    person = {"id": "PP1", "supervisee": "A", "device": device, "sms": "+8613800000000"}
    counts = await load_scenario(
        pool, _write(tmp_path / "1", roster={**ROSTER, "protected": [person]})
    )
    assert counts["protected persons"] == 1
    async with pool.acquire() as conn:
        roster, _ = await load_rules(conn, "Asia/Shanghai")
        assert [
            (p.id, p.supervisee, p.device.owntracks, p.distance_m, p.sms) for p in roster.protected
        ] == [("PP1", "A", "victim/phone", 500.0, "+8613800000000")]
        # Ended: the person goes, and where they were goes from their alerts' evidence.
        alert = await conn.fetchval(
            "INSERT INTO alerts (type, supervisee_id, device_id, ts, key, detail)"
            " VALUES ('protected_proximity', 'A', 'TAG1', now(), 'k',"
            ' \'{"order": "PP1", "protected": {"lat": 28.4}}\') RETURNING id'
        )
        assert await proximity_repo.purge_protected(conn, "PP1") == 1
        detail = await conn.fetchval("SELECT detail FROM alerts WHERE id = $1", alert)
        assert "protected" not in detail and detail["protected_purged"] is True
        roster, _ = await load_rules(conn, "Asia/Shanghai")
        assert roster.protected == []
    # A phone reporting on a supervisee's OwnTracks topic would be taken for theirs.
    twin = {**person, "device": {"id": "V2", "kind": "phone", "owntracks": "zhang/iphone"}}
    with pytest.raises(ScenarioError, match="protected PP1: device V2 is \\(or reports as\\)"):
        await load_scenario(pool, _write(tmp_path / "3", roster={**ROSTER, "protected": [twin]}))
    stranger = {**person, "supervisee": "NOBODY"}
    with pytest.raises(ScenarioError, match="protected PP1: no such supervisee NOBODY"):
        await load_scenario(
            pool, _write(tmp_path / "2", roster={**ROSTER, "protected": [stranger]})
        )
