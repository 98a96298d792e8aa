"""OsmAnd over real HTTP (spec 4.1b) into a running service on the real PostgreSQL, Redis
and Mosquitto: every well-formed corpus request is answered 200 once stored, each
malformed one 400 with its reason; a retry is stored once; a phone's live exit is alerted
and, the phone having no downlink, sent no command; the service stays healthy. A
listener without an ingest to commit answers 503; a taken port stops the start at once;
and with the engine in shards, a listener in a process that judges no one gets its
requests committed by the worker that does."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msgspec
import pytest

from alerts.feed import SIGHTINGS
from fencewatch.config import ConfigError, Settings
from fencewatch.embedded import free_port
from fencewatch.loader import load_scenario
from fencewatch.servers import ServerUrls
from fencewatch.service import Service
from fencewatch.timefmt import iso
from geofence.proximity import Sighting
from geofence.ruleset import RuleSet
from ingest.osmand_http import OsmandListener
from simulators.demo import demo_scenario
from simulators.device import FleetPlan
from simulators.fleet import FleetStats, run_fleet
from storage.db import open_pool
from storage.rules import load_rules
from tests.faults import Stack, needs_private_stack, until
from tests.kit import LIANDU, lishui_collection
from tests.live import eventually, running, write_scenario
from tests.test_osmand import corpus, phones

# Time forms in the corpus, each rewritten to now in its own form: the corpus's times are
# years old, and ingest refuses fixes more than a month old.
_QUERY_TIME = re.compile(r"(?<=[?&]timestamp=)[^&]*")
_BODY_TIME = re.compile(r'(?<="timestamp":")[^"]*')


def roster() -> dict[str, Any]:
    return {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {
                "id": f"S{device}",
                "jurisdiction": [LIANDU],
                "devices": [{"id": device, "kind": "phone", "osmand": osmand_id}],
            }
            for osmand_id, device in phones().items()
        ],
    }


def restamped(case: dict[str, Any], ts: int) -> dict[str, Any]:
    """The request with its time moved to `ts` (epoch ms), written as it was written."""

    def form(match: re.Match[str]) -> str:
        old = match.group(0)
        if old == "0":
            return old  # the iOS client's unset time: rejected whenever it is sent
        if old.isdigit():
            return str(ts // 1000) if int(old) < 2**31 - 1 else str(ts)
        if "T" in old:
            return quote(iso(ts - ts % 1000).replace(".000", ""))
        return iso(ts)[:19].replace("T", "+").replace(":", "%3A")

    out = dict(case)
    out["url"] = _QUERY_TIME.sub(form, case["url"])
    if "body" in case:
        out["body"] = _BODY_TIME.sub(lambda _: iso(ts), case["body"])
    return out


async def send(phone: httpx.AsyncClient, case: dict[str, Any]) -> httpx.Response:
    url = urlsplit(case["url"])
    headers = {"content-type": case["content_type"]} if "content_type" in case else {}
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return await phone.request(
        case["method"], target, content=case.get("body", "").encode(), headers=headers
    )


async def test_every_corpus_request_over_http(pg_dsn, redis_url, mqtt_url) -> None:
    port = free_port()
    async with (
        running(
            pg_dsn, redis_url, mqtt_url, lishui_collection(), roster(), osmand_port=port
        ) as live,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as phone,
    ):
        await eventually(lambda: _ready(live.service), "the OsmAnd listener never got ready")
        cases = corpus()
        start = time.time_ns() // 1_000_000 - 60_000 * len(cases)
        sent = [restamped(case, start + 60_000 * k) for k, case in enumerate(cases)]
        for case in sent:
            r = await send(phone, case)
            want = case["expect"]
            if "reject" in want:
                assert r.status_code == 400, (case["case"], r.text)
                assert r.text.startswith(want["reject"] + ": "), (case["case"], r.text)
            else:
                assert (r.status_code, r.text) == (200, ""), case["case"]

        pool = live.service.pool
        accepted = [c for c in sent if "reject" not in c["expect"]]
        stored = await pool.fetch("SELECT device_id, lat FROM fixes ORDER BY device_id")
        assert len(stored) == len(accepted)  # 200 only once committed: nothing still to come
        positioned = [c for c in accepted if c["expect"].get("lat") is not None]
        track = []
        for device in phones().values():
            track += await live.track(f"S{device}", iso(start - 60_000), iso(start + 10**9))
        assert len(track) == len(positioned)
        sos = await pool.fetchval("SELECT count(*) FROM device_events WHERE type = 'sos'")
        assert sos == sum("sos" in c["expect"].get("events", []) for c in sent)

        # The phone did not hear the answers and sends it all again, twice over at once (a
        # request without a time of its own is a new report each time it comes).
        timed = [c for c in accepted if c["expect"].get("ts") != "arrival"]
        again = await asyncio.gather(*(send(phone, c) for c in timed + timed))
        assert {r.status_code for r in again} == {200}
        assert await pool.fetchval("SELECT count(*) FROM fixes") == len(accepted)

        # A phone far outside 莲都 reporting now: a live exit. A phone on HTTP has no
        # downlink, so no 责令立即返回 is queued for it, and an operator is told why.
        osmand_id = "123456789012345"
        now = time.time_ns() // 1_000_000
        for k in range(3):
            ts = (now - (2 - k) * 10_000) // 1000
            r = await phone.get(f"/?id={osmand_id}&timestamp={ts}&lat=40.7233&lon=-74.0061")
            assert r.status_code == 200

        async def live_exit() -> list[dict[str, Any]]:
            found = await live.alerts(
                type="jurisdiction_exit", supervisee=f"S{phones()[osmand_id]}"
            )
            return [a for a in found if not a["late"]]

        [alert] = await eventually(live_exit, "the phone's live exit was not alerted")
        await eventually(
            lambda: pool.fetchval("SELECT routed FROM alerts WHERE id = $1", alert["id"]),
            "the alert was not routed",
        )
        assert await pool.fetchval("SELECT count(*) FROM device_commands") == 0
        command = await live.http.post(f"/api/v1/alerts/{alert['id']}/command", json={})
        assert command.status_code == 409 and "OsmAnd" in command.text

        health = await live.http.get("/healthz")
        assert health.status_code == 200 and health.json()["components"]["osmand"] is True
        metrics = (await live.http.get("/metrics")).text
        assert 'fencewatch_osmand_requests_total{status="400"}' in metrics
        assert 'fencewatch_fixes_rejected_total{reason="out_of_range"}' in metrics
        rejected = await pool.fetch("SELECT topic, reason FROM rejected_messages")
        assert len(rejected) == len(sent) - len(accepted)
        # Kept by the listener, or by ingest when part of the request was used (the SOS).
        assert all(r["topic"].startswith("osmand") and ": " in r["reason"] for r in rejected)


async def _ready(service: Service) -> bool:
    return service.osmand is not None and service.osmand.ready


async def test_without_an_ingest_to_commit_the_phone_is_told_to_retry(
    pg_dsn: str, mqtt_url: str, tmp_path: Path
) -> None:
    """A listener whose requests no shard takes (no ingest runs): 503, never 200."""
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        await load_scenario(pool, write_scenario(tmp_path, lishui_collection(), roster()))
        async with pool.acquire() as conn:
            rules = RuleSet(*await load_rules(conn, "Asia/Shanghai"))
        listener = OsmandListener(pool, lambda: rules, mqtt_url, "osmand-test", commit_wait_s=0.5)
        job = asyncio.create_task(listener.run())
        try:
            await eventually(lambda: _listening(listener), "the listener never got ready")
            now = time.time_ns() // 1_000_000
            query = f"id={next(iter(phones()))}&lat=28.45&lon=119.91&timestamp={now // 1000}"
            assert await listener.answer(query, "", b"") == (503, _RETRY)
            status, text = await listener.answer("id=nobody&lat=28.45&lon=119.91", "", b"")
            assert status == 400 and text.startswith("unknown_device: ")
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
    finally:
        await pool.close()


_RETRY = "not committed in time: send it again"


async def _listening(listener: OsmandListener) -> bool:
    return listener.ready


async def test_a_taken_port_stops_the_start_at_once(pg_dsn, redis_url, mqtt_url) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = Settings(osmand_host="127.0.0.1", osmand_port=port, http_port=free_port())
        service = Service(settings, ServerUrls(pg_dsn, redis_url, mqtt_url, ()))
        async with asyncio.timeout(5):
            with pytest.raises(
                ConfigError, match=f"FENCEWATCH_OSMAND: cannot listen on 127.0.0.1:{port}"
            ):
                await service.run()


@needs_private_stack
async def test_a_listener_that_judges_no_one_hands_requests_to_the_worker_that_does(
    stack: Stack,
) -> None:
    """The api process takes the phone's request; an ingest worker holding every shard of
    four judges and commits it; the api process answers 200 on its receipt."""
    scenario = write_scenario(stack.root, lishui_collection(), roster())
    pool = await open_pool(stack.pg.url, min_size=1, max_size=2)
    try:
        await load_scenario(pool, scenario)
    finally:
        await pool.close()
    stack.start_service(0, 4, roles="api")
    stack.start_service(1, 4, roles="ingest")

    async def all_shards_held() -> bool:
        return await asyncio.to_thread(stack.metric, 1, "fencewatch_shards_held") == 4

    await until(all_shards_held, "the ingest worker did not take the shards")
    now = time.time_ns() // 1_000_000
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.osmand_ports[0]}", timeout=30
    ) as phone:
        for k, (osmand_id, _) in enumerate(phones().items()):
            ts = now // 1000 - 60 + k
            r = await phone.post(f"/?id={osmand_id}&timestamp={ts}&lat=28.45&lon=119.91&batt=80")
            assert (r.status_code, r.text) == (200, "")
    assert await stack.count("SELECT count(*) FROM fixes") == len(phones())


async def test_the_simulated_traccar_client_phone_reports_over_http(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    """The demo's Traccar Client phone, live: its locations are POSTed to the listener and
    stored; a phone queues what is not yet answered 200."""
    sc = demo_scenario(11, hours=1)
    person = next(p for p in sc.people if p.devices[0].osmand is not None)
    roster_doc = {**sc.roster_doc(), "supervisees": [person.roster_entry()]}
    port = free_port()
    async with running(
        pg_dsn, redis_url, mqtt_url, sc.zones_doc(), roster_doc, osmand_port=port
    ) as live:
        stop, stats = asyncio.Event(), FleetStats()
        plan = FleetPlan(sc.start, tuple(person.devices))
        fleet = asyncio.create_task(
            run_fleet(
                mqtt_url,
                plan,
                stop,
                history_s=1800,
                stats=stats,
                osmand_url=f"http://127.0.0.1:{port}/",
            )
        )

        async def stored() -> int:
            return await live.service.pool.fetchval(
                "SELECT count(*) FROM fixes WHERE device_id = $1", person.devices[0].id
            )

        await eventually(stored, "no location of the phone was stored")
        stop.set()
        await fleet
    assert stats.published >= stats.acked >= 1


async def test_a_protected_persons_osmand_phone_is_taken_and_kept_nowhere(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    """A protected person's Traccar Client phone posts to the same listener: answered 200
    once its shard has taken it, handed to the proximity check's stream, and written to
    neither `fixes` nor `rejected_messages` (docs/security.md)."""
    protection = f"PP-{uuid.uuid4().hex[:8]}"
    doc = {
        "timezone": "Asia/Shanghai",
        "supervisees": [{"id": "S1", "jurisdiction": [LIANDU], "devices": ["TS1"]}],
        "protected": [
            {
                "id": protection,
                "supervisee": "S1",
                "device": {"id": "V1", "kind": "phone", "osmand": "victim-osmand"},
            }
        ],
    }
    port = free_port()
    async with (
        running(pg_dsn, redis_url, mqtt_url, lishui_collection(), doc, osmand_port=port) as live,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as phone,
    ):
        await eventually(lambda: _ready(live.service), "the OsmAnd listener never got ready")
        now = int(time.time())
        sent = await phone.post(
            f"/?id=victim-osmand&lat=28.4512&lon=119.9123&timestamp={now}&accuracy=8"
        )
        assert sent.status_code == 200, sent.text
        stranger = await phone.post(f"/?id=nobody&lat=28.45&lon=119.91&timestamp={now}")
        assert stranger.status_code == 400  # not mistaken for a protected person's

        async def streamed() -> bool:
            entries = await live.service.redis.xrevrange(SIGHTINGS, count=200)
            return any(
                s.person == f"protected:{protection}" and s.device == "V1"
                for _, fields in entries
                for s in msgspec.msgpack.decode(fields[b"s"], type=list[Sighting])
            )

        await eventually(streamed, "the protected person's sighting never reached the stream")
        pool = live.service.pool
        assert await pool.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'V1'") == 0
        rejected = await pool.fetch("SELECT payload FROM rejected_messages")
        assert all(b"28.4512" not in bytes(r["payload"]) for r in rejected)
