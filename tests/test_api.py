"""The HTTP API on a real PostgreSQL and Redis: roles and scope, the alert workflow,
supervisees, devices, leave, zones (the real DataV file), track and positions, probes,
docs, and bad input."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import shapely
from redis.asyncio import Redis
from shapely.geometry import shape

from api.app import create_app
from api.context import ApiContext
from api.tokens import TokenError, create_token, revoke_token
from fencewatch import cli
from fencewatch.config import Settings
from geofence.model import DeviceRef
from geofence.zones import parse_feature_collection
from storage.db import open_pool
from storage.repo import offices as offices_repo
from storage.repo import orders as orders_repo
from storage.repo import people as people_repo
from storage.repo import zones as zones_repo
from tests.kit import OFFICES, PEOPLE, square

DATA = Path(__file__).resolve().parent.parent / "data"
T0 = datetime(2025, 11, 27, 2, 0, tzinfo=UTC)


ZONES = {
    "type": "FeatureCollection",
    "features": [
        square("J1", "jurisdiction", 119.9, 28.45, 0.1),
        square("J2", "jurisdiction", 120.15, 28.15, 0.05),
        square("H1", "home", 119.92, 28.46, 0.001),
        {
            "type": "Feature",
            "properties": {"id": "X1", "kind": "exclusion", "radius": 200},
            "geometry": {"type": "Point", "coordinates": [119.91, 28.45]},
        },
    ],
}

TOKENS = {
    "operator": ("operator", None),
    "auditor": ("auditor", None),
    "officer": ("officer", "S1"),
    "supervisor": ("supervisor", "K1"),
    "operator_k2": ("operator", "K2"),
}


@dataclass
class World:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    redis: Redis
    tokens: dict[str, str]
    alerts: dict[str, int]
    changed: list[list[str] | None] = field(default_factory=list)
    components: dict[str, bool] = field(default_factory=dict)

    async def call(
        self, who: str, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**(headers or {}), "Authorization": f"Bearer {self.tokens[who]}"}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def get(self, who: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.call(who, "GET", url, **kwargs)


async def _seed(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        for office in OFFICES:
            await offices_repo.upsert_office(conn, *office)
        for zone, source in zip(parse_feature_collection(ZONES), ZONES["features"], strict=True):
            await zones_repo.upsert_zone(conn, zone, source)
        alerts = {}
        for person, office in PEOPLE.items():
            await people_repo.put_supervisee(
                conn,
                person,
                name=f"对象{person}",
                office=office,
                officer=None,
                level="normal",
                jurisdiction=["J1"],
                exclusion=["X1"] if person == "P1" else [],
                home="H1" if person == "P1" else None,
                term_start=None,
                term_end=None,
                status="active",
            )
            await people_repo.upsert_device(conn, DeviceRef(f"T-{person}"))
            await people_repo.assign_device(conn, f"T-{person}", person)
            alerts[person] = await _add_alert(conn, person)
    return alerts


async def _give_order(pool: asyncpg.Pool, person: str) -> int:
    """A monitoring order in force for the next month (the API's own is tested in
    test_api_rules.py)."""
    today = datetime.now(UTC).date()
    async with pool.acquire() as conn:
        row = await orders_repo.insert_order(
            conn,
            person,
            ground="left_without_approval",
            approved_by="县司法局局长",
            starts_on=today - timedelta(days=1),
            ends_on=today + timedelta(days=30),
            decided_by="test",
        )
    return int(row["id"])


async def _add_alert(conn: Any, person: str, type: str = "jurisdiction_exit") -> int:
    """Alerts are the engine's to raise (alerts.record); here they are written directly."""
    return int(
        await conn.fetchval(
            "INSERT INTO alerts (key, type, supervisee_id, device_id, ts, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            uuid.uuid4().hex,
            type,
            person,
            f"T-{person}",
            T0,
            {"zone": "J1"},
        )
    )


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    async with open_world(pg_dsn, redis_url) as opened:
        yield opened


@asynccontextmanager
async def open_world(
    pg_dsn: str,
    redis_url: str,
    tokens_for: dict[str, tuple[str, str | None]] = TOKENS,
    offices: tuple[tuple[str, str, str, str | None], ...] = (),
    settings: Settings | None = None,
) -> AsyncIterator[World]:
    """The seeded database behind the real app (on `settings`, default the defaults);
    `offices` are added or changed after the seed's, and a token made for each of
    `tokens_for`."""
    pool = await open_pool(pg_dsn)
    redis = Redis.from_url(redis_url)
    alerts = await _seed(pool)
    async with pool.acquire() as conn:
        for office in offices:
            await offices_repo.upsert_office(conn, *office)
    tokens = {
        name: await create_token(pool, role, office, subject=name)
        for name, (role, office) in tokens_for.items()
    }
    changed: list[list[str] | None] = []
    components = {"ingest": True, "database": True, "redis": True, "broker": True}

    async def rules_changed(supervisees: list[str] | None) -> None:
        changed.append(supervisees)

    async def health() -> dict[str, bool]:
        return dict(components)

    app = create_app(ApiContext(pool, redis, health, rules_changed, settings or Settings()))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://fencewatch") as client:
            yield World(client, pool, redis, tokens, alerts, changed, components)
    finally:
        await redis.aclose()
        await pool.close()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


# --- authentication ----------------------------------------------------------------------


async def test_requests_without_a_valid_token_get_401(world: World) -> None:
    assert "bearer" in _error(await world.client.get("/api/v1/alerts"), 401).lower()
    wrong = {"Authorization": "Bearer fw_not-a-token"}
    assert _error(await world.client.get("/api/v1/alerts", headers=wrong), 401) == "unknown token"
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    _error(await world.client.get("/api/v1/alerts", headers=basic), 401)

    await revoke_token(world.pool, world.tokens["officer"])
    assert _error(await world.get("officer", "/api/v1/alerts"), 401) == "token revoked"

    await world.pool.execute(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE subject = 'auditor'"
    )
    assert _error(await world.get("auditor", "/api/v1/alerts"), 401) == "token expired"
    assert (await world.get("operator", "/api/v1/alerts")).status_code == 200


async def test_the_revoke_command_revokes_at_once(
    world: World,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    # In a thread: the command runs its own event loop, as it does from the shell.
    assert await asyncio.to_thread(cli.main, ["token", "revoke", world.tokens["officer"]]) == 0
    assert capsys.readouterr().out == "revoked\n"
    assert _error(await world.get("officer", "/api/v1/alerts"), 401) == "token revoked"
    assert await asyncio.to_thread(cli.main, ["token", "revoke", world.tokens["officer"]]) == 1
    assert "no such live token" in capsys.readouterr().err
    # From stdin, so the token stays out of the shell history and the process list.
    monkeypatch.setattr("sys.stdin", io.StringIO(world.tokens["auditor"] + "\n"))
    assert await asyncio.to_thread(cli.main, ["token", "revoke", "-"]) == 0
    assert _error(await world.get("auditor", "/api/v1/alerts"), 401) == "token revoked"
    assert (await world.get("operator", "/api/v1/alerts")).status_code == 200
    revoked = await world.pool.fetch(
        "SELECT detail FROM audit_log WHERE action = 'token.revoke' ORDER BY id"
    )
    assert len(revoked) == 2


async def test_tokens_are_stored_only_as_hashes(world: World) -> None:
    stored = {r["hash"] for r in await world.pool.fetch("SELECT hash FROM api_tokens")}
    assert len(stored) == len(TOKENS)
    assert not stored & set(world.tokens.values())
    assert all(t.startswith("fw_") and len(t) > 40 for t in world.tokens.values())


async def test_token_creation_checks_role_and_office(world: World) -> None:
    with pytest.raises(TokenError, match="need an office"):
        await create_token(world.pool, "officer")
    with pytest.raises(TokenError, match="does not exist"):
        await create_token(world.pool, "supervisor", "NOWHERE")
    with pytest.raises(TokenError, match="role must be"):
        await create_token(world.pool, "admin")


# --- roles and scope ---------------------------------------------------------------------


async def _people_seen(world: World, who: str) -> set[str]:
    response = await world.get(who, "/api/v1/alerts")
    assert response.status_code == 200, response.text
    alerts = {a["supervisee"] for a in response.json()["items"]}
    supervisees = {s["id"] for s in (await world.get(who, "/api/v1/supervisees")).json()["items"]}
    assert alerts == supervisees
    return supervisees


async def test_each_role_sees_its_offices(world: World) -> None:
    assert await _people_seen(world, "operator") == {"P1", "P2", "P3"}
    assert await _people_seen(world, "auditor") == {"P1", "P2", "P3"}
    assert await _people_seen(world, "supervisor") == {"P1", "P2"}  # K1's subtree
    assert await _people_seen(world, "officer") == {"P1"}  # S1 only
    assert await _people_seen(world, "operator_k2") == {"P3"}


async def test_officer_cannot_reach_people_outside_their_office(world: World) -> None:
    p2_alert = world.alerts["P2"]
    for method, url, body in [
        ("GET", "/api/v1/supervisees/P2", None),
        ("GET", f"/api/v1/alerts/{p2_alert}", None),
        ("POST", f"/api/v1/alerts/{p2_alert}/acknowledge", {}),
        (
            "GET",
            "/api/v1/supervisees/P2/track?from=2025-11-27T00:00:00Z&to=2025-11-28T00:00:00Z",
            None,
        ),
        ("GET", "/api/v1/supervisees/P2/devices", None),
        ("GET", "/api/v1/supervisees/P2/leaves", None),
        ("GET", "/api/v1/devices/T-P2", None),
    ]:
        response = await world.call("officer", method, url, json=body)
        assert response.status_code == 404, (url, response.text)
    assert {d["id"] for d in (await world.get("officer", "/api/v1/devices")).json()["items"]} == {
        "T-P1"
    }
    # The home zone locates P1; K2's operator has no business seeing it.
    zones = (await world.get("operator_k2", "/api/v1/zones")).json()["features"]
    assert {f["properties"]["id"] for f in zones} == {"J1", "J2"}
    zones = (await world.get("officer", "/api/v1/zones")).json()["features"]
    assert {f["properties"]["id"] for f in zones} == {"J1", "J2", "H1", "X1"}


async def test_officer_works_their_alerts_but_manages_nothing(world: World) -> None:
    response = await world.call(
        "officer", "POST", f"/api/v1/alerts/{world.alerts['P1']}/acknowledge", json={}
    )
    assert response.status_code == 200, response.text
    denied = [
        ("PUT", "/api/v1/supervisees/P1", {"office": "S1"}),
        ("PUT", "/api/v1/devices/T-NEW", {"kind": "tag"}),
        ("POST", "/api/v1/devices/T-P1/unassign", None),
        ("POST", "/api/v1/zones/import?kind=jurisdiction", ZONES),
        ("DELETE", "/api/v1/zones/J2", None),
        ("PUT", "/api/v1/offices/S9", {"name": "x", "kind": "station", "parent": "S1"}),
    ]
    for method, url, body in denied:
        message = _error(await world.call("officer", method, url, json=body), 403)
        assert message.startswith("officer tokens may not"), message


async def test_auditor_reads_everything_and_writes_nothing(world: World) -> None:
    for url in (
        "/api/v1/alerts",
        f"/api/v1/alerts/{world.alerts['P3']}",
        "/api/v1/supervisees/P3",
        "/api/v1/devices",
        "/api/v1/zones",
        "/api/v1/offices",
        "/api/v1/officers",
        "/api/v1/positions",
        "/api/v1/supervisees/P3/leaves",
        "/api/v1/supervisees/P3/track?from=2025-11-27T00:00:00Z&to=2025-11-28T00:00:00Z",
    ):
        assert (await world.get("auditor", url)).status_code == 200, url
    writes = [
        ("POST", f"/api/v1/alerts/{world.alerts['P1']}/acknowledge", {}),
        (
            "POST",
            f"/api/v1/alerts/{world.alerts['P1']}/resolve",
            {"disposition": "false_alarm", "note": "x"},
        ),
        ("PUT", "/api/v1/supervisees/P9", {}),
        ("PUT", "/api/v1/devices/T-P1", {"kind": "tag"}),
        ("POST", "/api/v1/devices/T-P1/assign", {"supervisee": "P2"}),
        ("POST", "/api/v1/zones/import", ZONES),
        ("PUT", "/api/v1/zones/J2", ZONES["features"][1]),
        ("DELETE", "/api/v1/zones/J2", None),
        ("POST", "/api/v1/supervisees/P1/leaves", {"from": "2025-12-01T00:00:00Z"}),
        ("PUT", "/api/v1/officers/O1", {"name": "x"}),
    ]
    before = await _snapshot(world.pool)
    for method, url, body in writes:
        assert "read-only" in _error(await world.call("auditor", method, url, json=body), 403)
    assert await _snapshot(world.pool) == before
    assert world.changed == []


async def _snapshot(pool: asyncpg.Pool) -> list[Any]:
    tables = ("alerts", "supervisees", "devices", "device_assignments", "zones", "leaves")
    return [[tuple(r) for r in await pool.fetch(f"SELECT * FROM {t} ORDER BY 1")] for t in tables]


# --- alerts ------------------------------------------------------------------------------


async def _person_back(world: World, person: str) -> None:
    """The engine saw the person back: their breach is no longer in progress."""
    await world.pool.execute(
        "UPDATE alerts SET active = false, cleared_at = now() WHERE id = $1", world.alerts[person]
    )


async def test_acknowledge_then_resolve_with_timeline_webhooks_and_audit(world: World) -> None:
    alert = world.alerts["P1"]
    await _person_back(world, "P1")
    listed = (await world.get("operator", "/api/v1/alerts?supervisee=P1")).json()["items"]
    assert listed[0]["status"] == "open"
    assert listed[0]["ts"] == "2025-11-27T02:00:00.000Z"
    assert set(listed[0]) >= {
        "id", "type", "supervisee", "device", "ts", "status", "late", "active",
        "raised_at", "severity", "escalation", "disposition", "note", "detail",
    }  # fmt: skip

    url = f"/api/v1/alerts/{alert}"
    acked = await world.call("officer", "POST", f"{url}/acknowledge", json={"note": "已电话联系"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    message = _error(await world.call("supervisor", "POST", f"{url}/acknowledge"), 409)
    assert "is acknowledged" in message

    resolved = await world.call(
        "supervisor",
        "POST",
        f"{url}/resolve",
        json={"disposition": "true_violation", "note": "已责令返回并训诫"},
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["status"], body["disposition"], body["note"]) == (
        "resolved",
        "true_violation",
        "已责令返回并训诫",
    )
    assert [(e["actor"], e["action"]) for e in body["timeline"]] == [
        ("officer", "acknowledged"),
        ("supervisor", "resolved"),
    ]
    assert body["timeline"][0]["detail"]["note"] == "已电话联系"
    again = {"disposition": "false_alarm", "note": "再次"}
    assert "is resolved" in _error(
        await world.call("operator", "POST", f"{url}/resolve", json=again), 409
    )
    assert "is resolved" in _error(await world.call("operator", "POST", f"{url}/acknowledge"), 409)
    assert (await world.get("auditor", url)).json() == body

    outbox = await world.pool.fetch("SELECT channel, payload FROM outbox ORDER BY id")
    assert [(r["channel"], r["payload"]["event"]) for r in outbox] == [
        ("webhook", "acknowledged"),
        ("webhook", "resolved"),
    ]
    assert outbox[1]["payload"]["alert"]["disposition"] == "true_violation"
    assert outbox[1]["payload"]["alert"]["id"] == alert
    audit = await world.pool.fetch(
        "SELECT actor, role, action, object FROM audit_log WHERE action LIKE 'alert.%' ORDER BY id"
    )
    assert [tuple(r) for r in audit] == [
        ("officer", "officer", "alert.acknowledged", f"alert:{alert}"),
        ("supervisor", "supervisor", "alert.resolved", f"alert:{alert}"),
    ]


async def test_an_open_alert_can_be_resolved_directly(world: World) -> None:
    await _person_back(world, "P3")
    response = await world.call(
        "operator",
        "POST",
        f"/api/v1/alerts/{world.alerts['P3']}/resolve",
        json={"disposition": "equipment_fault", "note": "腕带故障, 已更换"},
    )
    assert response.status_code == 200, response.text
    assert [e["action"] for e in response.json()["timeline"]] == ["resolved"]


async def test_resolve_rejects_bad_bodies(world: World) -> None:
    url = f"/api/v1/alerts/{world.alerts['P1']}/resolve"
    for body in (
        {"disposition": "ignored", "note": "x"},
        {"disposition": "false_alarm"},
        {"disposition": "false_alarm", "note": ""},
        {"disposition": "false_alarm", "note": "x", "extra": 1},
        None,
    ):
        message = _error(await world.call("operator", "POST", url, json=body), 422)
        assert message.startswith("invalid request: body"), message
    response = await world.call(
        "operator", "POST", url, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert _error(await world.call("operator", "POST", "/api/v1/alerts/999999/acknowledge"), 404)
    assert _error(await world.get("operator", "/api/v1/alerts/abc"), 422)


async def test_resolve_refuses_a_blank_note_as_the_console_does(world: World) -> None:
    url = f"/api/v1/alerts/{world.alerts['P1']}/resolve"
    for blank in ("", "   ", "\n\t　"):
        body = {"disposition": "false_alarm", "note": blank}
        message = _error(await world.call("operator", "POST", url, json=body), 422)
        assert message.endswith("body.note: the note is blank; say what was found and done")
    status = (await world.get("operator", f"/api/v1/alerts/{world.alerts['P1']}")).json()["status"]
    assert status != "resolved"
    await _person_back(world, "P1")
    kept = {"disposition": "false_alarm", "note": "  邻居报告, 已核实  "}
    response = await world.call("operator", "POST", url, json=kept)
    assert response.status_code == 200, response.text
    assert response.json()["note"] == "邻居报告, 已核实"


async def test_a_breach_still_in_progress_is_not_resolved_by_accident(world: World) -> None:
    """P1's exit alert is active: the service still sees them outside."""
    alert = world.alerts["P1"]
    url = f"/api/v1/alerts/{alert}"
    before = await _snapshot(world.pool)
    plain = {"disposition": "true_violation", "note": "已电话联系"}
    refused = await world.call("operator", "POST", f"{url}/resolve", json=plain)
    assert refused.status_code == 409
    assert "a breach still in progress: P1 is still outside" in refused.json()["error"]
    assert "while_active: true" in refused.json()["error"]
    assert refused.json()["detail"] == {
        "still_in_breach": True,
        "supervisee": "P1",
        "type": "jurisdiction_exit",
    }
    # Knowing it is still going on is not enough for a false alarm: why is the service wrong?
    unexplained = {"disposition": "false_alarm", "note": "本人称在家", "while_active": True}
    refused = await world.call("operator", "POST", f"{url}/resolve", json=unexplained)
    assert "a false alarm needs a reason" in _error(refused, 409)
    assert refused.json()["detail"]["reasons"] == [
        "verified_in_place",
        "position_drift",
        "zone_error",
    ]
    misplaced = {**plain, "while_active": True, "reason": "position_drift"}
    message = _error(await world.call("operator", "POST", f"{url}/resolve", json=misplaced), 422)
    assert "a reason is given only with false_alarm" in message
    assert await _snapshot(world.pool) == before
    detail = (await world.get("operator", url)).json()
    assert (detail["status"], detail["timeline"]) == ("open", [])
    assert await world.pool.fetchval("SELECT count(*) FROM outbox") == 0

    explained = {**unexplained, "reason": "verified_in_place", "note": "视频核实本人在家"}
    resolved = await world.call("officer", "POST", f"{url}/resolve", json=explained)
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["status"], body["active"], body["disposition"], body["reason"]) == (
        "resolved",
        True,
        "false_alarm",
        "verified_in_place",
    )
    [step] = body["timeline"]
    assert step["detail"] == {
        "disposition": "false_alarm",
        "reason": "verified_in_place",
        "note": "视频核实本人在家",
        "role": "officer",
        "while_active": True,
    }
    # Resolved yet still in breach (仍在越界): the console finds it with the active filter.
    still = (await world.get("operator", "/api/v1/alerts?status=resolved&active=true")).json()
    assert [a["id"] for a in still["items"]] == [alert]
    ended = (await world.get("operator", "/api/v1/alerts?status=resolved&active=false")).json()
    assert ended["items"] == []
    [audited] = await world.pool.fetch(
        "SELECT detail FROM audit_log WHERE action = 'alert.resolved'"
    )
    assert audited["detail"]["reason"] == "verified_in_place"


async def test_a_breach_still_in_progress_resolves_with_a_fitting_disposition(
    world: World,
) -> None:
    for person, disposition in (("P2", "approved_absence"), ("P3", "true_violation")):
        body = {"disposition": disposition, "note": "已核实", "while_active": True}
        response = await world.call(
            "operator", "POST", f"/api/v1/alerts/{world.alerts[person]}/resolve", json=body
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["active"]) == ("resolved", True)
        assert response.json()["reason"] is None
    # Conditions of the device, not of where the person is, resolve as before.
    async with world.pool.acquire() as conn:
        offline = await _add_alert(conn, "P2", "device_offline")
    body = {"disposition": "equipment_fault", "note": "电池耗尽，已通知充电"}
    response = await world.call("operator", "POST", f"/api/v1/alerts/{offline}/resolve", json=body)
    assert response.status_code == 200, response.text
    # Once the person is back, the flag is not needed.
    async with world.pool.acquire() as conn:
        exit_again = await _add_alert(conn, "P1")
    await world.pool.execute("UPDATE alerts SET active = false WHERE id = $1", exit_again)
    body = {"disposition": "true_violation", "note": "已返回"}
    url = f"/api/v1/alerts/{exit_again}/resolve"
    assert (await world.call("operator", "POST", url, json=body)).status_code == 200


async def test_alert_list_filters_and_pages_newest_first(world: World) -> None:
    async with world.pool.acquire() as conn:
        extra = [await _add_alert(conn, "P1", "low_battery") for _ in range(3)]
    items = (await world.get("operator", "/api/v1/alerts?supervisee=P1")).json()["items"]
    assert [a["id"] for a in items] == [*reversed(extra), world.alerts["P1"]]
    typed = await world.get("operator", "/api/v1/alerts?type=low_battery&status=open")
    assert {a["id"] for a in typed.json()["items"]} == set(extra)

    page = (await world.get("operator", "/api/v1/alerts?limit=2")).json()
    assert len(page["items"]) == 2 and page["next_before"] == page["items"][-1]["id"]
    rest = await world.get("operator", f"/api/v1/alerts?limit=100&before={page['next_before']}")
    assert rest.json()["next_before"] is None
    ids = [a["id"] for a in page["items"] + rest.json()["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 6
    _error(await world.get("operator", "/api/v1/alerts?status=closed"), 422)
    _error(await world.get("operator", "/api/v1/alerts?limit=0"), 422)


# --- supervisees, devices, offices -------------------------------------------------------


async def test_put_supervisee_validates_references(world: World) -> None:
    url = "/api/v1/supervisees/P9"
    good = {
        "name": "张某",
        "office": "S2",
        "level": "strict",
        "jurisdiction": ["J1", "J2"],
        "exclusion": ["X1"],
        "home": "H1",
        "term_start": "2025-01-01",
        "term_end": "2026-01-01",
    }
    cases = [
        ({**good, "jurisdiction": ["J1", "NOPE"]}, "jurisdiction zone 'NOPE' does not exist"),
        (
            {**good, "exclusion": ["J2"]},
            "'J2' is a jurisdiction zone and cannot be used as exclusion",
        ),
        ({**good, "home": "X1"}, "cannot be used as home"),
        ({**good, "office": "NOWHERE"}, "does not exist"),
        ({**good, "level": "extreme"}, "body.level"),
        ({**good, "term_end": "2024-01-01"}, "term_end is before term_start"),
        ({**good, "jurisdiction": "J1"}, "body.jurisdiction"),
        ({**good, "workplace": "NOPE"}, "workplace zone 'NOPE' does not exist"),
        ({**good, "workplace": {"lat": 28.4, "lon": 119.9, "radius_m": 1}}, "radius_m"),
    ]
    for body, reason in cases:
        assert reason in _error(await world.call("operator", "PUT", url, json=body), 422)
    assert world.changed == []

    response = await world.call("operator", "PUT", url, json=good)
    assert response.status_code == 200, response.text
    assert response.json()["jurisdiction"] == ["J1", "J2"] and response.json()["devices"] == []
    assert world.changed == [["P9"]]
    assert (await world.get("officer", url)).status_code == 404  # S2 is not the officer's
    assert (await world.get("supervisor", url)).json()["level"] == "strict"
    # A workplace (a place or a zone): co-workers there are no gathering.
    site = {"lat": 28.45, "lon": 119.92, "radius_m": 150.0, "name": "建筑工地"}
    response = await world.call("operator", "PUT", url, json={**good, "workplace": site})
    assert response.json()["workplace"] == site
    response = await world.call("operator", "PUT", url, json={**good, "workplace": "H1"})
    assert (await world.get("supervisor", url)).json()["workplace"] == "H1"


async def test_scoped_operator_manages_only_their_subtree(world: World) -> None:
    body = {"office": "S3", "jurisdiction": ["J1"]}
    assert (await world.call("operator_k2", "PUT", "/api/v1/supervisees/P3", json=body)).is_success
    moved = {"office": "S1", "jurisdiction": ["J1"]}
    _error(await world.call("operator_k2", "PUT", "/api/v1/supervisees/P3", json=moved), 403)
    _error(await world.call("operator_k2", "PUT", "/api/v1/supervisees/P1", json=body), 404)


async def test_devices_assign_unassign_and_history(world: World) -> None:
    phone = {"kind": "phone", "owntracks": "zhang/iphone", "model": "iPhone 15"}
    response = await world.call("operator", "PUT", "/api/v1/devices/PH1", json=phone)
    assert response.status_code == 200, response.text
    assert response.json()["supervisee"] is None
    dup = await world.call("operator", "PUT", "/api/v1/devices/PH2", json=phone)
    assert "already in use" in _error(dup, 409)
    assert "only a phone" in _error(
        await world.call("operator", "PUT", "/api/v1/devices/T9", json={"owntracks": "a/b"}), 422
    )
    _error(await world.call("operator", "PUT", "/api/v1/devices/T9", json={"kind": "watch"}), 422)
    # A JT/T 808 wristband, known by its terminal number, sending Amap coordinates.
    band = {"jt808": "013912345678", "crs": "gcj02"}
    response = await world.call("operator", "PUT", "/api/v1/devices/JT1", json=band)
    assert response.status_code == 200, response.text
    assert (response.json()["jt808"], response.json()["crs"]) == ("13912345678", "gcj02")
    dup = await world.call("operator", "PUT", "/api/v1/devices/JT2", json={"jt808": "13912345678"})
    assert "already in use" in _error(dup, 409)
    for bad in ({"jt808": "+86139"}, {"jt808": "1" * 21}, {"crs": "bd09"}):
        _error(await world.call("operator", "PUT", "/api/v1/devices/JT3", json=bad), 422)

    await _give_order(world.pool, "P2")  # a tag is fitted only under a monitoring order
    moved = await world.call(
        "operator", "POST", "/api/v1/devices/T-P1/assign", json={"supervisee": "P2"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["supervisee"] == "P2"
    assert world.changed == [["P2", "P1"]]
    history = (await world.get("operator", "/api/v1/supervisees/P1/devices")).json()["items"]
    assert [(h["device"], h["until"] is not None) for h in history] == [("T-P1", True)]
    history = (await world.get("operator", "/api/v1/supervisees/P2/devices")).json()["items"]
    assert {(h["device"], h["until"]) for h in history} == {("T-P1", None), ("T-P2", None)}
    again = await world.call(
        "operator", "POST", "/api/v1/devices/T-P1/assign", json={"supervisee": "P2"}
    )
    assert again.status_code == 200 and len(world.changed) == 1  # already theirs: no change

    assert (await world.call("operator", "POST", "/api/v1/devices/T-P1/unassign")).is_success
    assert "not assigned" in _error(
        await world.call("operator", "POST", "/api/v1/devices/T-P1/unassign"), 409
    )
    _error(
        await world.call(
            "operator", "POST", "/api/v1/devices/NOPE/assign", json={"supervisee": "P1"}
        ),
        404,
    )
    _error(
        await world.call(
            "operator", "POST", "/api/v1/devices/PH1/assign", json={"supervisee": "NOPE"}
        ),
        404,
    )
    rows = await world.pool.fetch("SELECT * FROM device_assignments WHERE device_id = 'T-P1'")
    assert len(rows) == 2  # the history is kept
    # K2's operator may fit stock devices to their people but not take P2's.
    take = {"supervisee": "P3"}
    _error(await world.call("operator_k2", "POST", "/api/v1/devices/T-P2/assign", json=take), 404)
    assert (
        await world.call("operator_k2", "POST", "/api/v1/devices/PH1/assign", json=take)
    ).is_success


async def test_offices_and_officers(world: World) -> None:
    offices = (await world.get("officer", "/api/v1/offices")).json()["items"]
    assert {o["id"]: o["parent"] for o in offices}["S1"] == "K1"
    body = {"name": "新建司法所", "kind": "station", "parent": "K1"}
    assert (await world.call("operator", "PUT", "/api/v1/offices/S4", json=body)).is_success
    cycle = {"name": "莲都区司法局", "kind": "county", "parent": "S1"}
    assert "cycle" in _error(
        await world.call("operator", "PUT", "/api/v1/offices/K1", json=cycle), 422
    )
    _error(
        await world.call("operator", "PUT", "/api/v1/offices/S5", json={**body, "parent": "NOPE"}),
        422,
    )
    _error(await world.call("operator_k2", "PUT", "/api/v1/offices/S4", json=body), 403)

    for officer, office in (("O1", "S1"), ("O3", "S3")):
        response = await world.call(
            "operator", "PUT", f"/api/v1/officers/{officer}",
            json={"name": officer, "office": office, "phone": "13800000000"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
    assert [o["id"] for o in (await world.get("officer", "/api/v1/officers")).json()["items"]] == [
        "O1"
    ]
    assert len((await world.get("auditor", "/api/v1/officers")).json()["items"]) == 2

    # Who escalations reach: the station's head and its duty contacts.
    headed = {**body, "head_officer": "O1", "duty_phone": "0578-2000000", "duty_email": "s4@x.cn"}
    saved = (await world.call("operator", "PUT", "/api/v1/offices/S4", json=headed)).json()
    assert {k: saved[k] for k in ("head_officer", "duty_phone", "duty_email")} == {
        "head_officer": "O1", "duty_phone": "0578-2000000", "duty_email": "s4@x.cn",
    }  # fmt: skip
    _error(
        await world.call(
            "operator", "PUT", "/api/v1/offices/S4", json={**body, "head_officer": "NO"}
        ),
        422,
    )


# --- leave -------------------------------------------------------------------------------


async def test_leave_is_recorded_checked_and_returned(world: World) -> None:
    url = "/api/v1/supervisees/P1/leaves"
    # Next year: a leave that has not ended yet still holds its destination zones.
    year = datetime.now(UTC).year + 1
    leave = {"from": f"{year}-12-01T08:00:00+08:00", "to": f"{year}-12-03T20:00:00+08:00"}
    for body, reason in (
        ({**leave, "to": f"{year}-11-30T08:00:00+08:00"}, "must end after it starts"),
        ({**leave, "destinations": ["J2", "NOPE"]}, "destination zone 'NOPE' does not exist"),
        ({**leave, "from": f"{year}-12-01T08:00:00"}, "timezone"),
    ):
        assert reason in _error(await world.call("officer", "POST", url, json=body), 422)
    assert "may not record leave" in _error(
        await world.call("operator", "POST", url, json=leave), 403
    )
    assert (
        await world.call("officer", "POST", "/api/v1/supervisees/P2/leaves", json=leave)
    ).status_code == 404

    created = await world.call(
        "officer",
        "POST",
        url,
        json={**leave, "destinations": ["J2"], "reason": "探亲", "approve": True},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["from"], body["to"]) == (
        f"{year}-12-01T00:00:00.000Z",
        f"{year}-12-03T12:00:00.000Z",
    )
    assert (body["approved_by"], body["status"], body["returned_at"]) == (
        "officer",
        "approved",
        None,
    )
    assert world.changed == [["P1"]]
    assert [x["id"] for x in (await world.get("auditor", url)).json()["items"]] == [body["id"]]
    # J2 is now a destination of a current leave: it cannot go.
    assert "leave" in _error(await world.call("operator", "DELETE", "/api/v1/zones/J2"), 409)

    returned = await world.call("supervisor", "POST", f"/api/v1/leaves/{body['id']}/return")
    assert returned.status_code == 200, returned.text
    assert returned.json()["returned_at"] is not None
    assert "already reported back" in _error(
        await world.call("officer", "POST", f"/api/v1/leaves/{body['id']}/return"), 409
    )
    _error(await world.call("officer", "POST", "/api/v1/leaves/nope/return"), 404)
    assert world.changed == [["P1"], ["P1"]]


# --- zones -------------------------------------------------------------------------------


def _centroid_shift_m(a: dict[str, Any], b: dict[str, Any]) -> float:
    ca, cb = shape(a).centroid, shape(b).centroid
    dy = (ca.y - cb.y) * 111_320
    dx = (ca.x - cb.x) * 111_320 * 0.8794  # cos(28.4°)
    return float((dx * dx + dy * dy) ** 0.5)


async def test_import_the_datav_lishui_file_as_gcj02(world: World) -> None:
    raw = (DATA / "lishui-331100-districts.geojson").read_bytes()
    response = await world.call(
        "operator",
        "POST",
        "/api/v1/zones/import?kind=jurisdiction&crs=gcj02",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    ids = response.json()["ids"]
    assert len(ids) == 9 and "331102" in ids

    original = next(
        f for f in msgspec.json.decode(raw)["features"] if f["properties"]["adcode"] == 331102
    )
    stored = await world.pool.fetchrow("SELECT * FROM zones WHERE id = '331102'")
    assert stored["name"] == "莲都区" and stored["source_crs"] == "gcj02"
    assert stored["source"] == original  # the feature as it came
    assert stored["properties"]["adcode"] == 331102
    assert 300 < _centroid_shift_m(stored["geometry"], original["geometry"]) < 800
    assert shapely.is_valid(shape(stored["geometry"]))

    feature = (await world.get("officer", "/api/v1/zones/331102")).json()
    assert feature["properties"] == {
        "id": "331102", "kind": "jurisdiction", "name": "莲都区", "crs": "gcj02",
        "schedule": [], "radius": None,
    }  # fmt: skip
    assert feature["geometry"] == stored["geometry"]
    listed = (await world.get("auditor", "/api/v1/zones?kind=jurisdiction")).json()
    assert listed["type"] == "FeatureCollection" and len(listed["features"]) == 11

    again = await world.call(
        "operator", "POST", "/api/v1/zones/import?kind=jurisdiction&crs=gcj02", content=raw,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert again.json()["ids"] == ids
    assert await world.pool.fetchval("SELECT count(*) FROM zones") == 13


async def test_zone_import_and_put_reject_bad_features(world: World) -> None:
    imp = "/api/v1/zones/import"
    no_kind = {"type": "FeatureCollection", "features": [square("Z", "x", 120, 28, 0.1)]}
    no_kind["features"][0]["properties"].pop("kind")
    assert "kind must be one of" in _error(
        await world.call("operator", "POST", imp, json=no_kind), 422
    )
    assert "FeatureCollection" in _error(
        await world.call("operator", "POST", imp, json={"type": "Feature"}), 422
    )
    point = {
        "type": "Feature",
        "properties": {"kind": "exclusion"},
        "geometry": {"type": "Point", "coordinates": [119.9, 28.4]},
    }
    assert "positive radius" in _error(
        await world.call("operator", "PUT", "/api/v1/zones/Z1", json=point), 422
    )
    swapped = square("Z2", "exclusion", 28.4, 119.9, 0.01)
    assert "out of range" in _error(
        await world.call("operator", "PUT", "/api/v1/zones/Z2", json=swapped), 422
    )
    assert "differs from the path" in _error(
        await world.call("operator", "PUT", "/api/v1/zones/OTHER", json=swapped), 422
    )
    _error(
        await world.call("operator", "PUT", "/api/v1/zones/Z3", json={**point, "geometry": None}),
        422,
    )
    assert await world.pool.fetchval("SELECT count(*) FROM zones") == 4


async def test_zone_put_delete_and_references(world: World) -> None:
    curfew = square("H1", "home", 119.92, 28.46, 0.002)
    curfew["properties"]["schedule"] = [{"days": [1, 2, 3, 4, 5], "from": "22:00", "to": "06:00"}]
    response = await world.call("operator", "PUT", "/api/v1/zones/H1", json=curfew)
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["schedule"] == curfew["properties"]["schedule"]
    assert world.changed == [["P1"]]

    as_exclusion = {**curfew, "properties": {**curfew["properties"], "kind": "exclusion"}}
    message = _error(
        await world.call("operator", "PUT", "/api/v1/zones/H1", json=as_exclusion), 409
    )
    assert "supervisee P1 (home)" in message
    message = _error(await world.call("operator", "DELETE", "/api/v1/zones/J1"), 409)
    assert "still used by supervisee P1 (jurisdiction), supervisee P2 (jurisdiction)" in message

    assert (await world.call("operator", "DELETE", "/api/v1/zones/J2")).status_code == 204
    assert (await world.call("operator", "DELETE", "/api/v1/zones/J2")).status_code == 404
    actions = await world.pool.fetch(
        "SELECT action, object FROM audit_log WHERE actor = 'operator'"
    )
    assert [tuple(a) for a in actions] == [("zone.put", "zone:H1"), ("zone.delete", "zone:J2")]


# --- location ----------------------------------------------------------------------------


async def _add_fixes(
    pool: asyncpg.Pool, person: str, fixes: list[tuple[int, float | None, int, str]]
) -> None:
    """(minutes after T0, lat or None for no fix, quality, zone_state), as ingest stores them."""
    await pool.executemany(
        "INSERT INTO fixes (device_id, supervisee_id, seq, ts, received_at, lat, lon, acc, batt,"
        " src, quality, zone_state) VALUES ($1, $2, $3, $4, $4, $5, $6, 8.5, 80, 'gps', $7, $8)",
        [
            (f"T-{person}", person, seq, T0 + timedelta(minutes=m), lat, lat and 119.91, q, state)
            for seq, (m, lat, q, state) in enumerate(fixes, 1)
        ],
    )  # fmt: skip


async def test_track_is_geojson_of_the_persons_fixes_and_is_audited(world: World) -> None:
    fixes = [(0, 28.45, 0, "in"), (1, None, 1, None), (2, 28.46, 4 | 16, "uncertain")]
    await _add_fixes(world.pool, "P1", [*fixes, (90, 28.47, 0, "out")])
    await _add_fixes(world.pool, "P2", [(1, 28.40, 0, "in")])
    url = "/api/v1/supervisees/P1/track?from=2025-11-27T10:00:00%2B08:00&to=2025-11-27T03:00:00Z"
    response = await world.get("officer", url)
    assert response.status_code == 200, response.text
    track = response.json()
    assert track["type"] == "FeatureCollection"
    assert [f["geometry"] for f in track["features"]] == [
        {"type": "Point", "coordinates": [119.91, 28.45]},
        {"type": "Point", "coordinates": [119.91, 28.46]},
    ]
    first, second = (f["properties"] for f in track["features"])
    assert first == {
        "ts": "2025-11-27T02:00:00.000Z", "device": "T-P1", "seq": 1, "acc": 8.5, "src": "gps",
        "batt": 80, "quality": [], "zone_state": "in",
    }  # fmt: skip
    assert (second["seq"], second["quality"], second["zone_state"]) == (
        3,
        ["ACC_POOR", "LATE"],
        "uncertain",
    )
    audit = await world.pool.fetchrow("SELECT * FROM audit_log WHERE action = 'location.track'")
    assert (audit["actor"], audit["object"], audit["detail"]["fixes"]) == (
        "officer",
        "supervisee:P1",
        2,
    )

    for query, reason in (
        ("from=2025-11-27T03:00:00Z&to=2025-11-27T02:00:00Z", "must be after"),
        ("from=2025-10-01T00:00:00Z&to=2025-11-27T00:00:00Z", "at most 31 days"),
        ("from=2025-11-27T02:00:00&to=2025-11-27T03:00:00Z", "timezone"),
        ("to=2025-11-27T03:00:00Z", "query.from"),
        ("from=yesterday&to=2025-11-27T03:00:00Z", "query.from"),
    ):
        assert reason in _error(
            await world.get("operator", f"/api/v1/supervisees/P1/track?{query}"), 422
        )


async def test_positions_come_from_redis_and_fall_back_to_the_database(world: World) -> None:
    live = {"supervisee": "P1", "device": "T-P1", "ts": "2025-11-27T02:05:00.000Z",
            "lat": 28.45, "lon": 119.91, "acc": 5.0, "batt": 90, "state": "ok"}  # fmt: skip
    await world.redis.hset("fencewatch:latest", mapping={"P1": msgspec.json.encode(live)})
    await world.pool.execute("UPDATE alerts SET active = false")  # the seeded ones
    await _add_fixes(
        world.pool, "P2", [(0, 28.40, 0, "in"), (3, 28.41, 0, "out"), (4, None, 1, None)]
    )
    async with world.pool.acquire() as conn:
        await _add_alert(conn, "P3", "exclusion_enter")
    await _add_fixes(world.pool, "P3", [(0, 28.2, 0, "in")])

    items = (await world.get("operator", "/api/v1/positions")).json()["items"]
    assert items[0] == live
    assert (items[1]["supervisee"], items[1]["lat"], items[1]["ts"], items[1]["state"]) == (
        "P2", 28.41, "2025-11-27T02:03:00.000Z", "outside",
    )  # fmt: skip
    assert (items[2]["supervisee"], items[2]["state"]) == ("P3", "breach")
    assert [
        p["supervisee"] for p in (await world.get("officer", "/api/v1/positions")).json()["items"]
    ] == ["P1"]
    audited = await world.pool.fetch("SELECT actor FROM audit_log WHERE action = 'location.latest'")
    assert [r["actor"] for r in audited] == ["operator", "officer"]


async def test_positions_survive_a_redis_outage(world: World) -> None:
    await _add_fixes(world.pool, "P2", [(0, 28.40, 0, "in")])
    await world.pool.execute("UPDATE alerts SET active = false")

    async def nothing(_: list[str] | None) -> None:
        return None

    async def healthy() -> dict[str, bool]:
        return {}

    dead = Redis.from_url("redis://127.0.0.1:1")  # nothing listens on port 1
    app = create_app(ApiContext(world.pool, dead, healthy, nothing))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        response = await c.get(
            "/api/v1/positions", headers={"Authorization": f"Bearer {world.tokens['auditor']}"}
        )
    await dead.aclose()
    assert response.status_code == 200, response.text
    assert [(p["supervisee"], p["state"]) for p in response.json()["items"]] == [("P2", "ok")]


# --- probes, docs and the error shape ----------------------------------------------------


async def test_healthz_reports_each_component(world: World) -> None:
    ok = await world.client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json() == {"ok": True, "components": world.components, "failed": []}
    world.components["broker"] = False
    down = await world.client.get("/healthz")
    assert down.status_code == 503
    assert (down.json()["ok"], down.json()["failed"]) == (False, ["broker"])


async def test_metrics_are_prometheus_text(world: World) -> None:
    response = await world.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "fencewatch_fixes_received_total" in response.text


async def test_openapi_and_offline_docs(world: World) -> None:
    spec = (await world.client.get("/openapi.json")).json()
    assert (
        "/api/v1/alerts" in spec["paths"]
        and "/api/v1/supervisees/{supervisee_id}/track" in spec["paths"]
    )
    schemas = spec["components"]["schemas"]
    assert {"Alert", "Track", "ZoneCollection", "ErrorBody"} <= set(schemas)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    ack = spec["paths"]["/api/v1/alerts/{alert_id}/acknowledge"]["post"]["responses"]
    assert ack["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")

    docs = await world.client.get("/docs")
    assert docs.status_code == 200
    assert "http://" not in docs.text and "https://" not in docs.text  # nothing from the internet
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert (await world.client.get(f"/docs/assets/{asset}")).status_code == 200
    assert (await world.client.get("/redoc")).status_code == 404


async def test_unknown_routes_and_methods_answer_in_the_error_shape(world: World) -> None:
    assert _error(await world.get("operator", "/api/v1/nothing"), 404) == "Not Found"
    _error(await world.call("operator", "DELETE", "/api/v1/alerts"), 405)
    assert _error(await world.get("operator", "/api/v1/supervisees/NOPE"), 404).startswith(
        "supervisee 'NOPE' not found"
    )
