"""The hostile-message corpus (tests/corpus/): every case through ingest.decode with the
reason the index gives; a replayed message decoded twice but judged and stored once; the
whole corpus through the live service on the real broker and database, after which the
service is healthy and the next valid fix is stored.
"""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from geofence.engine import Engine
from geofence.model import Quality, Roster
from geofence.ruleset import RuleSet
from geofence.zones import parse_feature_collection
from ingest.decode import decode
from ingest.topics import UPLINK
from ingest.writer import commit
from storage.db import open_pool
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection
from tests.live import eventually, running

CORPUS = Path(__file__).resolve().parent / "corpus"


@cache
def index() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    return loaded


def payload(case: dict[str, Any]) -> bytes:
    return (CORPUS / case["file"]).read_bytes()


def _params() -> list[Any]:
    return [pytest.param(case, id=case["case"]) for case in index()["cases"]]


def test_the_index_and_the_files_agree() -> None:
    listed = {c["file"] for c in index()["cases"]}
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_file() and p.name != "index.json"}
    assert listed == on_disk
    names = [c["case"] for c in index()["cases"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", _params())
def test_corpus_case_is_rejected_with_its_reason(case: dict[str, Any]) -> None:
    idx = index()
    out = decode(case["topic"], payload(case), idx["at"], idx["devices"], idx["owntracks"])
    expected = [case["reason"]] if case["reason"] else []
    assert [r.reason for r in out.rejections] == expected, out.rejections
    assert all(r.detail and r.topic == case["topic"] for r in out.rejections)
    assert len(out.fixes) == case.get("fixes", 0)
    assert len(out.events) == case.get("events", 0)


def _engine() -> Engine:
    from fencewatch.scenario import parse_supervisee

    person = parse_supervisee({"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]})
    roster = Roster(timezone="Asia/Shanghai", supervisees=[person])
    return Engine(RuleSet(roster, parse_feature_collection(lishui_collection())))


async def test_a_replayed_message_is_accepted_once_then_deduplicated(pg_dsn: str) -> None:
    idx = index()
    replay = idx["replay"]
    raw = replay["payload"].encode()
    engine = _engine()
    pool = await open_pool(pg_dsn, min_size=1, max_size=1)
    try:
        stored, flags = [], []
        for _ in range(2):
            out = decode(replay["topic"], raw, idx["at"], idx["devices"], idx["owntracks"])
            assert len(out.fixes) == 1 and not out.rejections  # valid each time
            outcome = engine.process(out.fixes, out.events)
            flags.append(outcome.judged[0].flags & Quality.DUPLICATE)
            async with pool.acquire() as conn:
                done = await commit(
                    conn,
                    outcome.judged,
                    out.events,
                    engine.rules.device_owner,
                    [],
                    outcome.verdicts,
                )
            stored.append(done.stored)
        assert not flags[0] and flags[1]  # the engine judges it once
        assert stored == [1, 0]  # the database keeps it once
        assert await pool.fetchval("SELECT count(*) FROM fixes") == 1
    finally:
        await pool.close()


# --- the live service ------------------------------------------------------------------------

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "S1",
            "jurisdiction": [LIANDU],
            "devices": ["T1", {"id": "P1", "kind": "phone", "owntracks": "alice/phone"}],
        },
        {"id": "S2", "jurisdiction": [LIANDU], "devices": ["T2"]},
    ],
}


def at_now(body: bytes) -> bytes:
    """The corpus's fix time (ms, and OwnTracks' seconds) moved to now, so that a message
    arriving now meets the checks it was written for rather than the age limit."""
    corpus_ms = index()["at"] - 123
    now_ms = int(time.time() * 1000)
    body = body.replace(str(corpus_ms).encode(), str(now_ms).encode())
    return body.replace(str(corpus_ms // 1000).encode(), str(now_ms // 1000).encode())


def _delivered(topic: str) -> bool:
    """Whether ingest's subscriptions receive a publish on `topic` at all."""
    if "+" in topic or "#" in topic:
        return False  # not a topic one can publish to
    return any(mqtt.topic_matches_sub(sub, topic) for sub in UPLINK)


async def _publish_then_check_a_valid_fix_is_stored(
    pg_dsn: str, redis_url: str, mqtt_url: str, messages: list[tuple[str, bytes]]
) -> Any:
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        for topic, body in messages:
            live.device.publish(topic, body)
        now = int(time.time() * 1000)
        good = {"v": 1, "seq": 424242, "ts": now, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1]}
        live.device.publish("em/T1/loc", good)

        async def stored() -> bool:
            return bool(
                await live.service.pool.fetchval(
                    "SELECT count(*) FROM fixes WHERE device_id = 'T1' AND seq = 424242"
                )
            )

        # MQTT keeps one publisher's order and ingest commits in it: once the valid fix
        # is stored, everything published before it has been handled.
        await eventually(stored, "the valid fix after the corpus was not stored")
        assert (await live.http.get("/healthz")).status_code == 200
        rows = await live.service.pool.fetch("SELECT topic, reason FROM rejected_messages")
        metrics = (await live.http.get("/metrics")).text
        return rows, metrics


async def test_the_corpus_never_stops_the_live_service(
    pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    cases = [c for c in index()["cases"] if _delivered(c["topic"]) and c["reason"] is not None]
    messages = [(c["topic"], at_now(payload(c))) for c in cases]
    rows, metrics = await _publish_then_check_a_valid_fix_is_stored(
        pg_dsn, redis_url, mqtt_url, messages
    )
    # Every case is rejected, with its reason and detail recorded (a batch's bad entries
    # each count, so there can be more rows than cases).
    assert len(rows) >= len(cases)
    assert all(": " in r["reason"] for r in rows)
    assert {r["topic"] for r in rows} == {c["topic"] for c in cases}
    reasons = {r["reason"].split(":", 1)[0] for r in rows}
    assert reasons == {c["reason"] for c in cases}
    for reason in reasons:
        assert f'fencewatch_fixes_rejected_total{{reason="{reason}"}}' in metrics
