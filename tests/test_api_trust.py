"""Issue 13's probes of the API, each now refused, on a real PostgreSQL and Redis: values
that would stop the engine, heightened periods outside one's scope or relaxing the rules,
zones read or rewritten across offices, oversized requests, and the low-severity leaks
(score table, duty phones, driver text in errors). docs/security.md lists them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from geofence.ruleset import RuleSet
from storage.repo import orders as orders_repo
from storage.repo import zones as zones_repo
from storage.rules import load_rules
from tests.test_api import TOKENS, World, _error, open_world

WHO = {**TOKENS, "k2": ("supervisor", "K2")}
NOW = datetime.now(UTC)


@pytest.fixture
async def world(pg_dsn: str, redis_url: str) -> AsyncIterator[World]:
    async with open_world(pg_dsn, redis_url, WHO) as opened:
        yield opened


def _period(policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """In force from an hour ago for a day."""
    return {
        "from": (NOW - timedelta(hours=1)).isoformat(),
        "to": (NOW + timedelta(days=1)).isoformat(),
        "policy": policy,
        **extra,
    }


# --- item 2: nothing that would stop the engine gets in ------------------------------------


async def test_values_that_would_stop_the_engine_are_refused(world: World) -> None:
    circle = {
        "type": "Feature",
        "properties": {"kind": "exclusion", "radius": 1e308},
        "geometry": {"type": "Point", "coordinates": [119.91, 28.45]},
    }
    reason = _error(await world.call("operator", "PUT", "/api/v1/zones/XX", json=circle), 422)
    assert "radius must be 1 to 100000 metres" in reason
    # JSON's 1e309 is infinity to the parser; it is refused, not stored.
    body = b'{"from": "%s", "to": "%s", "policy": {"acc_max_m": 1e309}}' % (
        (NOW - timedelta(hours=1)).isoformat().encode(),
        (NOW + timedelta(days=1)).isoformat().encode(),
    )
    response = await world.call(
        "operator",
        "PUT",
        "/api/v1/heightened/inf",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert "acc_max_m must be 1 to 100000" in _error(response, 422)
    assert await world.pool.fetchval("SELECT count(*) FROM heightened_periods") == 0
    assert not await zones_repo.zone_exists(world.pool, "XX")  # type: ignore[arg-type]


# --- item 3: heightened periods are scoped and only tighten --------------------------------


async def test_a_county_cannot_silence_alerts_anywhere(world: World) -> None:
    url = "/api/v1/heightened/quiet"
    for policy in ({"confirm_fixes": 1_000_000}, {"confirm_fixes": 5}, {"offline_s": 86_400}):
        reason = _error(await world.call("supervisor", "PUT", url, json=_period(policy)), 422)
        assert "confirm_fixes must be 1 to 20" in reason or "only tighten" in reason, reason
    outside = _period({"confirm_fixes": 2}, offices=["K2"])
    assert "outside your offices" in _error(
        await world.call("supervisor", "PUT", url, json=outside), 403
    )
    assert await world.pool.fetchval("SELECT count(*) FROM heightened_periods") == 0


async def test_heightened_periods_apply_to_the_creators_offices_only(world: World) -> None:
    k1 = await world.call(
        "supervisor", "PUT", "/api/v1/heightened/k1", json=_period({"confirm_fixes": 2})
    )
    assert k1.status_code == 200, k1.text
    assert k1.json()["offices"] == ["K1"]
    async with world.pool.acquire() as conn:
        roster, zones = await load_rules(conn, "Asia/Shanghai")
    rules = RuleSet(roster, zones)
    now = int(NOW.timestamp() * 1000)
    assert rules.policy("T-P1", now).confirm_fixes == 2  # P1: station S1, under K1
    assert rules.policy("T-P3", now).confirm_fixes == 3  # P3: K2's
    assert await orders_repo.heightened_in_force(world.pool, NOW, "P1")  # type: ignore[arg-type]
    assert not await orders_repo.heightened_in_force(world.pool, NOW, "P3")  # type: ignore[arg-type]

    # K2 neither sees nor changes K1's period; K1 cannot change a service-wide one.
    _error(await world.get("k2", "/api/v1/heightened/k1"), 404)
    assert (await world.get("k2", "/api/v1/heightened")).json()["items"] == []
    _error(await world.call("k2", "PUT", "/api/v1/heightened/k1", json=_period({})), 404)
    _error(await world.call("k2", "DELETE", "/api/v1/heightened/k1"), 404)
    everyone = await world.call("operator", "PUT", "/api/v1/heightened/all", json=_period({}))
    assert everyone.json()["offices"] == []
    listed = (await world.get("k2", "/api/v1/heightened")).json()["items"]
    assert [p["id"] for p in listed] == ["all"]
    _error(await world.call("supervisor", "DELETE", "/api/v1/heightened/all"), 403)
    # The scoped operator of K2 makes periods for K2 only.
    mine = await world.call("operator_k2", "PUT", "/api/v1/heightened/k2", json=_period({}))
    assert mine.json()["offices"] == ["K2"]


# --- item 4: zones are read and changed within one's offices -------------------------------


async def test_naming_another_offices_zone_as_a_destination_reveals_nothing(world: World) -> None:
    # H1 (P1's home) and X1 (P1's exclusion zone, around a victim) are S1's; K2 probes them.
    body = {
        "from": (NOW + timedelta(days=5)).isoformat(),
        "to": (NOW + timedelta(days=6)).isoformat(),
        "destinations": ["H1", "X1"],
    }
    response = await world.call("k2", "POST", "/api/v1/supervisees/P3/leaves", json=body)
    reason = _error(response, 422)
    assert "'H1' does not exist" in reason and "'X1' does not exist" in reason
    _error(await world.get("k2", "/api/v1/zones/H1"), 404)
    seen = {
        f["properties"]["id"] for f in (await world.get("k2", "/api/v1/zones")).json()["features"]
    }
    assert seen == {"J1", "J2"}
    # Nor as a zone of one's own person.
    person = {"office": "S3", "jurisdiction": ["J1"], "home": "H1"}
    assert "'H1' does not exist" in _error(
        await world.call("operator_k2", "PUT", "/api/v1/supervisees/P3", json=person), 422
    )


async def test_zone_reads_are_audited(world: World) -> None:
    assert (await world.get("officer", "/api/v1/zones/H1")).status_code == 200
    assert (await world.get("officer", "/api/v1/zones?kind=home")).status_code == 200
    rows = await world.pool.fetch(
        "SELECT actor, action, object, detail FROM audit_log WHERE action LIKE 'location.zone%'"
        " ORDER BY id"
    )
    assert [(r["actor"], r["action"], r["object"]) for r in rows] == [
        ("officer", "location.zone", "zone:H1"),
        ("officer", "location.zones", "zones"),
    ]
    assert rows[1]["detail"]["ids"] == ["H1"]


async def test_a_scoped_operator_cannot_rewrite_another_offices_zone(world: World) -> None:
    # J1 is every seeded person's jurisdiction: P1, P2 (K1) and P3 (K2). K2's operator can
    # read it — public geography — but not redraw it under K1's people.
    j1 = (await world.get("operator_k2", "/api/v1/zones/J1")).json()
    shrunk = {**j1, "geometry": _square(119.9, 28.45, 0.001)}
    reason = _error(await world.call("operator_k2", "PUT", "/api/v1/zones/J1", json=shrunk), 403)
    assert "belongs to offices outside yours (S1, S2)" in reason
    # J2 is used by nobody and was loaded by the centre: not K2's either.
    _error(await world.call("operator_k2", "DELETE", "/api/v1/zones/J2"), 403)
    # A zone K2 makes is K2's to change, and unseen by K1 until K1's people use it.
    mine = {**shrunk, "properties": {"kind": "exclusion", "name": "K2 的禁止区域"}}
    assert (
        await world.call("operator_k2", "PUT", "/api/v1/zones/K2X", json=mine)
    ).status_code == 200
    again = {**mine, "geometry": _square(119.9, 28.45, 0.002)}
    assert (
        await world.call("operator_k2", "PUT", "/api/v1/zones/K2X", json=again)
    ).status_code == 200
    _error(await world.get("supervisor", "/api/v1/zones/K2X"), 404)
    assert (await world.call("operator", "PUT", "/api/v1/zones/J1", json=shrunk)).status_code == 200


def _square(lon: float, lat: float, half: float) -> dict[str, Any]:
    ring = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


# --- item 6: request size limits -----------------------------------------------------------


async def test_oversized_requests_are_refused_before_anything_is_kept(world: World) -> None:
    url = "/api/v1/supervisees/P1/leaves"
    leave = {
        "from": (NOW + timedelta(days=5)).isoformat(),
        "to": (NOW + timedelta(days=6)).isoformat(),
        "destinations": ["J2"],
    }
    huge = {**leave, "reason": "x" * 50_000_000}
    reason = _error(await world.call("officer", "POST", url, json=huge), 413)
    assert "request body over 1048576 bytes" in reason

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"reason": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'"}'

    streamed = await world.call(
        "officer", "POST", url, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "request body over" in _error(streamed, 413)
    long = {**leave, "reason": "探亲" * 1001}
    assert "at most 2000 characters" in _error(
        await world.call("officer", "POST", url, json=long), 422
    )
    assert await world.pool.fetchval("SELECT count(*) FROM leaves") == 0
    logged = await world.pool.fetchval("SELECT max(length(detail::text)) FROM audit_log")
    assert (logged or 0) < 10_000
    # Zone files may be larger, to a limit of their own.
    big = {"type": "FeatureCollection", "features": [], "pad": "x" * (17 << 20)}
    assert "over 16777216 bytes" in _error(
        await world.call("operator", "POST", "/api/v1/zones/import", json=big), 413
    )


# --- item 7: the small leaks ----------------------------------------------------------------


async def test_only_the_centre_changes_the_score_table(world: World) -> None:
    url = "/api/v1/assessment/rules/sos"
    for who in ("operator_k2", "supervisor"):
        _error(await world.call(who, "PUT", url, json={"points": 9}), 403)
    assert (await world.call("operator", "PUT", url, json={"points": 1})).status_code == 200


async def test_duty_contacts_are_shown_only_within_ones_offices(world: World) -> None:
    await world.pool.execute(
        "UPDATE offices SET duty_phone = '1390000' || id, duty_email = id || '@sfj.example'"
    )
    offices = {
        o["id"]: o for o in (await world.get("supervisor", "/api/v1/offices")).json()["items"]
    }
    assert set(offices) == {"C", "K1", "S1", "S2", "K2", "S3"}  # the hierarchy is no secret
    assert offices["S1"]["duty_phone"] == "1390000S1"
    assert offices["K2"]["duty_phone"] is None and offices["S3"]["duty_email"] is None
    everyone = (await world.get("operator", "/api/v1/offices")).json()["items"]
    assert all(o["duty_phone"] for o in everyone)


async def test_errors_never_echo_the_database(world: World) -> None:
    body = {"office": "NOWHERE", "jurisdiction": ["J1"]}
    reason = _error(await world.call("operator", "PUT", "/api/v1/supervisees/P9", json=body), 422)
    for driver_words in ("Key (", "table", "constraint", "violates", "NOWHERE"):
        assert driver_words not in reason, reason
