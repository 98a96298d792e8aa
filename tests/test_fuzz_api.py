"""schemathesis against the app's own OpenAPI document: every operation, a few generated
requests each (valid and invalid), sent in-process to the ASGI app on a real PostgreSQL
and Redis with real tokens of two roles (all offices, and one county's). Checks: no 5xx,
and every response conforms to the schema the document gives for it. Then the stateful
phase: call sequences chained through the links schemathesis infers from the document, each
from the database as seeded.
Sized for CI (seconds); FENCEWATCH_FUZZ_EXAMPLES=N runs N examples per operation (and N
sequences) and the coverage phase.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import threading
import uuid
import zlib
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from redis.asyncio import Redis
from schemathesis import Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token
from fencewatch.loader import load_scenario
from storage.db import open_pool
from storage.repo import offices as offices_repo
from tests.conftest import PG_ADMIN, REDIS_BASE, _dsn_for
from tests.kit import square

T = TypeVar("T")
EXAMPLES = int(os.environ.get("FENCEWATCH_FUZZ_EXAMPLES", "0")) or 4
# CI runs the generated cases only; a longer run (FENCEWATCH_FUZZ_EXAMPLES set) adds the
# explicit phase, where schemathesis's coverage cases (boundaries, each invalid variant of
# each parameter) are: several dozen per operation, minutes in all.
PHASES = (
    [Phase.explicit, Phase.generate, Phase.shrink]
    if os.environ.get("FENCEWATCH_FUZZ_EXAMPLES")
    else [Phase.generate, Phase.shrink]
)
BASE = "http://fencewatch"

# The document as the app publishes it; the app needs no servers to describe itself.
schema = schemathesis.openapi.from_dict(
    create_app(cast(ApiContext, ApiContext(*(cast(Any, None),) * 4))).openapi()
)


ZONES = {"type": "FeatureCollection", "features": [square("J1", "jurisdiction", 119.9, 28.45, 0.1)]}
ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {"id": p, "jurisdiction": ["J1"], "devices": [f"T-{p}"]} for p in ("P1", "P2", "P3")
    ],
}
OFFICES = [
    ("C", "监控中心", "center", None),
    ("K1", "莲都区司法局", "county", "C"),
    ("S1", "紫金司法所", "station", "K1"),
    ("K2", "青田县司法局", "county", "C"),
    ("S3", "鹤城司法所", "station", "K2"),
]
PEOPLE = {"P1": "S1", "P2": "S1", "P3": "S3"}
TOKENS = {"operator": None, "supervisor": "K1"}
# Path parameters that name seeded objects, so that half the requests reach real ones.
KNOWN = {
    "supervisee_id": "P1",
    "device_id": "T-P1",
    "zone_id": "J1",
    "office_id": "S1",
    "alert_id": 1,
}


# The database's own tables (partitions too: COPY reads no partitioned table) and sequences.
TABLES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname = 'public' AND NOT EXISTS"
    " (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') ORDER BY 1"
)
SEQUENCES = (
    "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, start_value),"
    " last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'"
)


class Seeded:
    """The database's rows and sequences as seeded, to put it back to: a fresh copy of a
    template database would do as well, but dropping each costs a checkpoint (seconds on a
    busy machine)."""

    def __init__(self, rows: dict[str, bytes], sequences: list[asyncpg.Record]) -> None:
        self.rows = rows
        self.sequences = sequences

    @classmethod
    async def capture(cls, conn: asyncpg.Connection) -> Seeded:
        rows = {}
        for table in await conn.fetch(TABLES):
            out = io.BytesIO()
            await conn.copy_from_table(table[0], output=out, format="binary")
            rows[table[0]] = out.getvalue()
        return cls(rows, await conn.fetch(SEQUENCES))

    async def restore(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # No trigger fires (the audit log's refuses a DELETE), no foreign key is checked.
            # DELETE, not TRUNCATE: a TRUNCATE of every table takes a second, not 50 ms.
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("; ".join(f'DELETE FROM "{t}"' for t in self.rows))
            for table, data in self.rows.items():
                await conn.copy_to_table(table, source=io.BytesIO(data), format="binary")
            for name, value, called in self.sequences:
                await conn.execute("SELECT setval($1::text::regclass, $2, $3)", name, value, called)


class Backend:
    """The app with its database and Redis, on an event loop in a thread of its own: the
    hypothesis-driven test is synchronous and sends each request into that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.database = f"fw_test_{uuid.uuid4().hex[:12]}"
        self.tokens: dict[str, str] = {}

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    async def start(self) -> None:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        self.pool = await open_pool(_dsn_for(self.database), min_size=1, max_size=4)
        self.redis = Redis.from_url(f"{REDIS_BASE}/{1 + os.getpid() % 15}")
        await self.redis.flushdb()
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "zones.geojson").write_text(json.dumps(ZONES))
            (Path(tmp) / "roster.json").write_text(json.dumps(ROSTER))
            await load_scenario(self.pool, Path(tmp))
        async with self.pool.acquire() as conn:
            for row in OFFICES:
                await offices_repo.upsert_office(conn, *row)
            for person, office in PEOPLE.items():
                await conn.execute(
                    "UPDATE supervisees SET office_id = $2 WHERE id = $1", person, office
                )
                await conn.execute(
                    "INSERT INTO alerts (key, type, supervisee_id, device_id, ts)"
                    " VALUES ($1, 'jurisdiction_exit', $2, $3, $4)",
                    uuid.uuid4().hex,
                    person,
                    f"T-{person}",
                    datetime(2025, 11, 27, 2, tzinfo=UTC),
                )
        for role, scope in TOKENS.items():
            self.tokens[role] = await create_token(self.pool, role, scope, subject=role)
        async with self.pool.acquire() as conn:
            self.seeded = await Seeded.capture(conn)

        async def health() -> dict[str, bool]:
            return {"ingest": True, "database": True, "redis": True, "broker": True}

        async def rules_changed(_: list[str] | None) -> None:
            return None

        app = create_app(ApiContext(self.pool, self.redis, health, rules_changed))
        # A crash must come back as the 500 it is, for the check to see, not as a raise.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url=BASE)

    async def stop(self) -> None:
        await self.client.aclose()
        await self.redis.aclose()
        await self.pool.close()
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await admin.close()

    async def reset(self) -> None:
        """The database back as seeded."""
        async with self.pool.acquire() as conn:
            await self.seeded.restore(conn)

    def call(self, kwargs: dict[str, Any]) -> httpx.Response:
        return self.run(self.client.request(**kwargs))

    def close(self) -> None:
        try:
            self.run(self.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    b = Backend()
    try:
        b.run(b.start())
        yield b
    finally:
        b.close()


def _request(case: schemathesis.Case, token: str) -> dict[str, Any]:
    """The case as httpx.AsyncClient.request keywords, with the token as its credentials."""
    kwargs = case.as_transport_kwargs(base_url=BASE)
    headers = {
        k: v
        for k, v in kwargs.get("headers", {}).items()
        if k.lower() not in ("authorization", "connection")
    }
    headers["Authorization"] = f"Bearer {token}"
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "params": kwargs.get("params"),
        "headers": headers,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    body = kwargs.get("data", kwargs.get("content"))
    if body is not None:
        request["content"] = body if isinstance(body, bytes | str) else json.dumps(body)
    return request


def _aim(case: schemathesis.Case) -> None:
    """For half the cases (chosen by the case itself, so reruns repeat), point the path at
    seeded objects: random ids alone would meet little but 404."""
    params = case.path_parameters or {}
    if params and zlib.crc32(repr(sorted(params.items())).encode()) % 2 == 0:
        for name in params:
            if name in KNOWN:
                params[name] = KNOWN[name]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    phases=PHASES,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, backend: Backend) -> None:
    _aim(case)
    for role in TOKENS:
        response = backend.call(_request(case, backend.tokens[role]))
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


# Stateful phase: sequences of calls chained by the links schemathesis infers from the
# document (a list's ids into the get, approve, refuse… of one of them), so requests reach
# objects that exist and change them in turn. Sized for CI: well under a minute.
# Each sequence starts from the database as seeded: which rule a step may take depends on
# the answers before it (a 200 fills the bundle a link draws from, a 404 does not), and
# hypothesis requires the same choices to lead to the same draws; on a database that the
# sequences before (or the other tests here) had changed, they did not, and hypothesis
# failed the test as FlakyStrategyDefinition.
STATEFUL_EXAMPLES = int(os.environ.get("FENCEWATCH_FUZZ_EXAMPLES", "0")) or 30
STATEFUL_STEPS = 10
CHECKS = [not_a_server_error, response_schema_conformance]


class _Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Each step as the unscoped operator, whose answers drive the links, and again as the
    county supervisor: neither may ever meet a 5xx or a response off the document."""

    backend: Backend

    def setup(self) -> None:
        self.backend.run(self.backend.reset())

    def call(self, case: schemathesis.Case, **kwargs: Any) -> Response:
        scoped = self.backend.call(_request(case, self.backend.tokens["supervisor"]))
        case.validate_response(scoped, checks=CHECKS)
        return Response.from_any(self.backend.call(_request(case, self.backend.tokens["operator"])))

    def validate_response(
        self, response: Response, case: schemathesis.Case, *args: Any, **kwargs: Any
    ) -> None:
        case.validate_response(response, checks=CHECKS)


def test_api_workflows_conform_to_its_openapi_document(backend: Backend) -> None:
    _Workflow.backend = backend
    _Workflow.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            phases=[Phase.generate],
            deadline=None,
            database=None,
            derandomize=bool(os.environ.get("CI")),
            suppress_health_check=list(HealthCheck),
        )
    )


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/alerts?before=1180591620717411303424",  # beyond bigint
        "/api/v1/alerts/1180591620717411303424",
        "/api/v1/orders/1180591620717411303424",
        "/api/v1/alerts?type=a%00b",  # NUL
        "/api/v1/supervisees/a%00b",
        "/api/v1/zones/a%00b",
        "/api/v1/alerts/1180591620717411303424/evidence",
        "/api/v1/supervisees/a%00b/evidence?from=2025-11-27T00:00:00Z&to=2025-11-28T00:00:00Z",
    ],
)
def test_out_of_range_ids_and_nul_characters_are_client_errors(url: str, backend: Backend) -> None:
    headers = {"Authorization": f"Bearer {backend.tokens['operator']}"}
    response = backend.call({"method": "GET", "url": url, "headers": headers})
    assert response.status_code in (404, 422), response.text
