"""The audit log on the real PostgreSQL: append-only whatever the client, scoped per row to
the office of the person it is about, and read through GET /api/v1/audit by the auditor
(everything) and supervisors (their offices), never by officers or operators. A track read
shows up with who read whose data, when, and which range."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token
from fencewatch.loader import load_scenario
from storage.db import open_pool
from storage.repo import access as access_repo
from storage.repo import offices as offices_repo
from tests.kit import OFFICES, PEOPLE

T0 = datetime(2025, 11, 27, 2, 0, tzinfo=UTC)

TOKENS = {
    "auditor": ("auditor", None),
    "auditor_k2": ("auditor", "K2"),
    "supervisor_k1": ("supervisor", "K1"),
    "supervisor_k2": ("supervisor", "K2"),
    "officer_s1": ("officer", "S1"),
    "operator": ("operator", None),
}
ZONES = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"id": "J1", "kind": "jurisdiction"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[119.8, 28.35], [120.0, 28.35], [120.0, 28.55], [119.8, 28.35]]],
            },
        }
    ],
}


@dataclass
class World:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    tokens: dict[str, str]

    async def get(self, who: str, url: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.client.get(url, params=params, headers=headers)

    async def audit(self, who: str, **params: Any) -> list[dict[str, Any]]:
        """Every row `who` may see with these filters, following the pages."""
        rows: list[dict[str, Any]] = []
        params = {"limit": 2, **params}
        while True:
            r = await self.get(who, "/api/v1/audit", **params)
            assert r.status_code == 200, r.text
            body = r.json()
            rows += body["items"]
            if body["next_before"] is None:
                return rows
            params["before"] = body["next_before"]

    async def track(self, who: str, person: str) -> httpx.Response:
        start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
        return await self.get(
            who,
            f"/api/v1/supervisees/{person}/track",
            **{"from": start.isoformat(), "to": end.isoformat()},
        )


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    pool = await open_pool(pg_dsn)
    redis = Redis.from_url(redis_url)
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [{"id": p, "jurisdiction": ["J1"], "devices": [f"T-{p}"]} for p in PEOPLE],
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "zones.geojson").write_text(json.dumps(ZONES))
        (Path(tmp) / "roster.json").write_text(json.dumps(roster))
        await load_scenario(pool, Path(tmp))
    async with pool.acquire() as conn:
        for row in OFFICES:
            await offices_repo.upsert_office(conn, *row)
        for person, office in PEOPLE.items():
            await conn.execute(
                "UPDATE supervisees SET office_id = $2 WHERE id = $1", person, office
            )
            await conn.execute(
                "INSERT INTO fixes (device_id, supervisee_id, seq, ts, received_at, lat, lon)"
                " VALUES ($1, $2, 1, $3, $3, 28.45, 119.9)",
                f"T-{person}",
                person,
                T0,
            )
    tokens = {
        name: await create_token(pool, role, office, subject=name)
        for name, (role, office) in TOKENS.items()
    }

    async def health() -> dict[str, bool]:
        return {}

    async def rules_changed(_: list[str] | None) -> None:
        return None

    app = create_app(ApiContext(pool, redis, health, rules_changed))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://fencewatch") as client:
            yield World(client, pool, tokens)
    finally:
        await redis.aclose()
        await pool.close()


# --- append-only ---------------------------------------------------------------------------


async def test_audit_rows_cannot_be_changed_or_removed(world: World) -> None:
    count = await world.pool.fetchval("SELECT count(*) FROM audit_log")
    assert count > 0  # token creations, the scenario load
    for sql in (
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await world.pool.execute(sql)
    assert await world.pool.fetchval("SELECT count(*) FROM audit_log") == count
    # Appending still works, and is scoped by the object it names.
    async with world.pool.acquire() as conn:
        await access_repo.audit(conn, "test", None, "test.append", "supervisee:P2", {"n": 1})
    row = await world.pool.fetchrow(
        "SELECT supervisee_id, office_id FROM audit_log WHERE action = 'test.append'"
    )
    assert row is not None and dict(row) == {"supervisee_id": "P2", "office_id": "S2"}


async def test_each_object_kind_is_scoped_to_its_office(world: World) -> None:
    async with world.pool.acquire() as conn:
        alert = await conn.fetchval(
            "INSERT INTO alerts (key, type, supervisee_id, device_id, ts)"
            " VALUES ($1, 'jurisdiction_exit', 'P3', 'T-P3', $2) RETURNING id",
            uuid.uuid4().hex,
            T0,
        )
        await conn.execute(
            "INSERT INTO leaves (id, supervisee_id, starts_at, ends_at)"
            " VALUES ('L1', 'P1', $1, $2)",
            T0,
            T0 + timedelta(days=2),
        )
        await conn.execute("INSERT INTO officers (id, name, office_id) VALUES ('O2', '王', 'S2')")
        for obj in (
            f"alert:{alert}",
            "leave:L1",
            "device:T-P2",
            "office:K2",
            "officer:O2",
            "zone:J1",
            "alert:not-a-number",
            "nonsense",
        ):
            await access_repo.audit(conn, "test", None, "test.scope", obj, {})
    rows = await world.pool.fetch(
        "SELECT object, supervisee_id, office_id FROM audit_log"
        " WHERE action = 'test.scope' ORDER BY id"
    )
    assert [(r["object"], r["supervisee_id"], r["office_id"]) for r in rows] == [
        (f"alert:{alert}", "P3", "S3"),
        ("leave:L1", "P1", "S1"),
        ("device:T-P2", "P2", "S2"),
        ("office:K2", None, "K2"),
        ("officer:O2", None, "S2"),
        ("zone:J1", None, None),
        ("alert:not-a-number", None, None),
        ("nonsense", None, None),
    ]


# --- reading it --------------------------------------------------------------------------------


async def test_a_track_read_is_audited_with_who_when_and_what(world: World) -> None:
    before = datetime.now(UTC)
    r = await world.track("officer_s1", "P1")
    assert r.status_code == 200 and len(r.json()["features"]) == 1
    after = datetime.now(UTC)

    rows = await world.audit("auditor", action="location.track")
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "officer_s1" and row["role"] == "officer"
    assert row["object"] == "supervisee:P1"
    assert row["supervisee"] == "P1" and row["office"] == "S1"
    at = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= at <= after + timedelta(seconds=1)
    assert row["detail"]["fixes"] == 1
    assert row["detail"]["from"] == (T0 - timedelta(hours=1)).isoformat()
    # The supervisor of the officer's county sees it too; the other county does not.
    assert [x["id"] for x in await world.audit("supervisor_k1", action="location.track")] == [
        row["id"]
    ]
    assert await world.audit("supervisor_k2", action="location.track") == []


async def _reads_of_everyone(world: World) -> None:
    for person in PEOPLE:
        assert (await world.track("operator", person)).status_code == 200
    assert (await world.track("officer_s1", "P1")).status_code == 200
    assert (await world.track("supervisor_k2", "P3")).status_code == 200


async def test_each_role_sees_exactly_its_part_of_the_log(world: World) -> None:
    await _reads_of_everyone(world)
    everything = {
        r["id"]: (r["object"], r["office_id"])
        for r in await world.pool.fetch("SELECT id, object, office_id FROM audit_log")
    }
    k1 = {"K1", "S1", "S2"}
    k2 = {"K2", "S3"}

    def ids(rows: list[dict[str, Any]]) -> set[int]:
        # The audit reads made while paging are themselves logged; leave those out.
        return {r["id"] for r in rows if r["action"] != "audit.read"}

    assert ids(await world.audit("auditor")) == set(everything)
    assert ids(await world.audit("supervisor_k1")) == {
        i for i, (_, office) in everything.items() if office in k1
    }
    assert ids(await world.audit("supervisor_k2")) == {
        i for i, (_, office) in everything.items() if office in k2
    }
    # A scoped auditor (a county procuratorate) sees its county, like a supervisor.
    assert ids(await world.audit("auditor_k2")) == ids(await world.audit("supervisor_k2"))
    # Concretely: the K1 supervisor sees the reads of P1 and P2 and nothing of P3's.
    seen = await world.audit("supervisor_k1", action="location.track")
    assert sorted((r["actor"], r["object"]) for r in seen) == [
        ("officer_s1", "supervisee:P1"),
        ("operator", "supervisee:P1"),
        ("operator", "supervisee:P2"),
    ]
    # Those whose reads are audited do not read the audit.
    for who in ("officer_s1", "operator"):
        r = await world.get(who, "/api/v1/audit")
        assert r.status_code == 403, r.text
        assert "audit" in r.json()["error"]
    assert (await world.client.get("/api/v1/audit")).status_code == 401


async def test_reading_the_audit_log_is_itself_audited(world: World) -> None:
    await world.get("supervisor_k1", "/api/v1/audit", actor="operator")
    rows = await world.audit("auditor", action="audit.read", actor="supervisor_k1")
    assert len(rows) == 1
    assert rows[0]["detail"] == {"count": 0, "actor": "operator"}
    # Oversight of the overseers is the unscoped auditor's alone.
    assert await world.audit("supervisor_k1", action="audit.read") == []


async def test_filters_and_paging(world: World) -> None:
    await _reads_of_everyone(world)
    reads = await world.audit("auditor", action="location.*")
    assert len(reads) == 5 and {r["action"] for r in reads} == {"location.track"}
    assert [r["id"] for r in reads] == sorted((r["id"] for r in reads), reverse=True)
    assert len(await world.audit("auditor", actor="operator", action="location.track")) == 3
    assert len(await world.audit("auditor", object="supervisee:P3")) == 2
    assert len(await world.audit("auditor", supervisee="P1", action="location.track")) == 2
    assert await world.audit("auditor", action="location") == []  # exact unless '*'
    assert await world.audit("auditor", action="loc%") == []  # LIKE characters are literal
    tokens = await world.audit("auditor", action="token.create")
    assert len(tokens) == len(TOKENS)

    first = datetime.fromisoformat(reads[-1]["at"].replace("Z", "+00:00"))
    last = datetime.fromisoformat(reads[0]["at"].replace("Z", "+00:00"))
    # Times come back in milliseconds: the window reaches a millisecond past the last.
    window = await world.audit(
        "auditor",
        action="location.track",
        **{"from": first.isoformat(), "to": (last + timedelta(milliseconds=1)).isoformat()},
    )
    assert len(window) == 5
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await world.audit("auditor", **{"from": future}) == []

    backwards = {"from": future, "to": first.isoformat()}
    assert (await world.get("auditor", "/api/v1/audit", **backwards)).status_code == 422
    for bad in ({"limit": 0}, {"limit": 1001}, {"before": 2**70}, {"actor": "a\x00b"}):
        r = await world.get("auditor", "/api/v1/audit", **bad)
        assert r.status_code == 422, (bad, r.text)
