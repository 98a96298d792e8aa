"""Every supervision rule end to end over the real Mosquitto, PostgreSQL and Redis: one
scenario of the suite (simulators.suite, a fixed seed) per rule, its zones and roster loaded
into the running service, its pings published over MQTT in arrival order, and the alerts the
API then lists scored against the scenario's ground truth with the suite's own scorer.

The suite's dates are in November 2025 and ingest refuses fixes older than 31 days, so every
time in a scenario is moved by the same whole number of weeks (curfews, exclusion windows
and permits are weekly, in local time): as close to now as that allows, never past it.

Hours of pings go through in seconds, so two things cannot be checked live: device_offline
(driven by the wall clock; engine tests and replay cover it) and a breach's `late: false`
(every fix but the last few minutes reaches the service long after it was taken). A truth
event the scorer calls late must still come out with `late: true`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
from prometheus_client import REGISTRY

from fencewatch.scenario import iso_to_ms, read_pings
from fencewatch.timefmt import iso
from simulators.score import Alert, Tally, match
from simulators.suite import build
from tests.live import WAIT_S, Live, running

WEEK_MS = 7 * 86_400_000
MARGIN_MS = 5_000  # the newest time lands at least this long before now
SETTLE_PROBES = 15  # probes (0.2 s apart) with nothing moving: ingest has had it all


@dataclass(frozen=True)
class Case:
    kind: str
    seed: int
    rule: str
    why: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.seed}"


# Seeds chosen so each scenario holds a real (non-optional) truth event of its rule.
CASES = [
    Case("exit_walk", 1, "jurisdiction_exit", "walks out and stays out"),
    Case("exclusion_gcj02", 4, "exclusion_enter", "goes into a GCJ-02 victim's-home zone"),
    Case("exclusion_night", 4, "exclusion_enter", "back at the venue at night, past midnight"),
    Case("curfew_late", 1, "curfew_breach", "out after 22:00"),
    Case("leave_overdue", 1, "jurisdiction_exit", "still away when the leave ends"),
    Case("buffered_breach", 1, "jurisdiction_exit", "the exit arrives late, in a batch"),
    Case("qos_redelivery", 1, "jurisdiction_exit", "duplicated messages: one alert only"),
    Case("no_fix", 1, "no_fix", "an hour and a half in a basement"),
    Case("low_battery", 1, "low_battery", "the battery runs down through 20%"),
    Case("strap_tamper", 1, "strap_tamper", "strap cut, reported live"),
    Case("strap_tamper", 4, "strap_tamper", "strap cut in a coverage gap (late)"),
]


# -- the scenario, moved to now ----------------------------------------------------------------


@dataclass
class Shifted:
    zones: dict[str, Any]
    roster: dict[str, Any]
    pings: list[tuple[str, bytes]]  # (topic, payload), in arrival order
    truth: list[dict[str, Any]]
    offset_ms: int
    fixes: int  # position reports in the pings (batch entries counted one by one)


def _payload_times(payload: dict[str, Any]) -> list[int]:
    if payload.get("_type") == "location":
        return [int(payload["tst"]) * 1000]
    entries = payload.get("batch") or [payload]
    return [int(e["ts"]) for e in entries if "ts" in e]


def _shift_payload(payload: dict[str, Any], offset_ms: int) -> dict[str, Any]:
    out = dict(payload)
    if out.get("_type") == "location":
        for key in ("tst", "created_at"):
            if key in out:
                out[key] = int(out[key]) + offset_ms // 1000
        return out
    if "ts" in out:
        out["ts"] = int(out["ts"]) + offset_ms
    if isinstance(out.get("batch"), list):
        out["batch"] = [{**e, "ts": int(e["ts"]) + offset_ms} for e in out["batch"]]
    return out


def _shift_iso(value: str, offset_ms: int) -> str:
    return iso(iso_to_ms(value, "time") + offset_ms)


def _shift_roster(roster: dict[str, Any], offset_ms: int) -> dict[str, Any]:
    out = json.loads(json.dumps(roster))
    for person in out["supervisees"]:
        for leave in person.get("leaves") or []:
            for key in ("from", "to", "returned"):
                if leave.get(key):
                    leave[key] = _shift_iso(leave[key], offset_ms)
    for period in out.get("heightened") or []:
        for key in ("from", "to"):
            period[key] = _shift_iso(period[key], offset_ms)
    return out


def _fix_count(topic: str, payload: dict[str, Any]) -> int:
    if topic.startswith("owntracks/"):
        return 1 if payload.get("_type") == "location" else 0
    if topic.endswith("/loc"):
        return len(payload["batch"]) if isinstance(payload.get("batch"), list) else 1
    return 0


def scenario(case: Case, directory: Path, now_ms: int) -> Shifted:
    build(case.kind, case.seed, 0, directory)
    raw = [
        (p.at, p.topic, msgspec.json.decode(p.payload))
        for p in read_pings(directory / "pings.jsonl")
    ]
    newest = max(max([at, *_payload_times(payload)]) for at, _, payload in raw)
    offset = (now_ms - MARGIN_MS - newest) // WEEK_MS * WEEK_MS
    truth = json.loads((directory / "truth.json").read_text())
    for event in truth:
        event["start"] += offset
        if event["end"] is not None:
            event["end"] += offset
    return Shifted(
        zones=json.loads((directory / "zones.geojson").read_text()),
        roster=_shift_roster(json.loads((directory / "roster.json").read_text()), offset),
        pings=[
            (topic, json.dumps(_shift_payload(payload, offset)).encode())
            for _, topic, payload in raw
        ],
        truth=truth,
        offset_ms=offset,
        fixes=sum(_fix_count(topic, payload) for _, topic, payload in raw),
    )


# -- publishing and waiting --------------------------------------------------------------------


def _publish_all(client: mqtt.Client, pings: list[tuple[str, bytes]]) -> None:
    """Everything at QoS 1, in order, as fast as the broker acknowledges it."""
    sent = [client.publish(topic, payload, qos=1) for topic, payload in pings]
    for info in sent:
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"the broker never acknowledged message {info.mid}"


def _received() -> float:
    return REGISTRY.get_sample_value("fencewatch_fixes_received_total") or 0.0


async def _rejected(live: Live) -> list[str]:
    rows = await live.service.pool.fetch("SELECT reason FROM rejected_messages ORDER BY 1")
    return [r["reason"] for r in rows]


async def wait_until_handled(live: Live, base: float, fixes: int) -> int:
    """Until ingest has taken every fix (its counter has moved by `fixes`) and committed its
    last batch, or nothing has moved for a few seconds (some were rejected, or lost); how
    many fixes ingest took."""
    service = live.service
    last: tuple[float, int] | None = None
    still = 0
    async with asyncio.timeout(WAIT_S):
        while True:
            idle = service.backlog == 0 and not service.busy
            progress = (_received() - base, len(await _rejected(live)))
            if idle and progress[0] >= fixes:
                return int(progress[0])
            still = still + 1 if idle and progress == last else 0
            if still >= SETTLE_PROBES:
                return int(progress[0])
            last = progress
            await asyncio.sleep(0.2)


async def api_alerts(live: Live, rule: str) -> list[dict[str, Any]]:
    r = await live.http.get("/api/v1/alerts", params={"type": rule, "limit": "1000"})
    r.raise_for_status()
    return list(r.json()["items"])


def _describe(items: list[dict[str, Any]]) -> str:
    return "\n".join("  " + json.dumps(i, ensure_ascii=False, default=str) for i in items)


# -- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_rule_end_to_end_over_mqtt(
    case: Case, tmp_path: Path, pg_dsn: str, redis_url: str, mqtt_url: str
) -> None:
    now = int(time.time() * 1000)
    sc = scenario(case, tmp_path / case.id, now)
    assert sc.offset_ms % WEEK_MS == 0 and sc.offset_ms > 0
    truth = [e for e in sc.truth if e["type"] == case.rule]
    real = [e for e in truth if not e.get("optional")]
    assert real, f"{case.id} has no real {case.rule} in its truth: has the suite changed?"

    async with running(pg_dsn, redis_url, mqtt_url, sc.zones, sc.roster) as live:
        base = _received()
        await asyncio.to_thread(_publish_all, live.device.client, sc.pings)
        received = await wait_until_handled(live, base, sc.fixes)
        rejected = await _rejected(live)
        items = await api_alerts(live, case.rule)

    assert rejected == [], f"{case.id}: ingest rejected suite pings: {rejected[:5]}"
    assert received == sc.fixes, f"{case.id}: ingest took {received} of {sc.fixes} fixes"
    alerts = [
        Alert(
            a["type"], a["supervisee"], a.get("device") or "", iso_to_ms(a["ts"], "ts"), a["late"]
        )
        for a in items
    ]
    tally: Tally = match(truth, alerts)
    detail = (
        f"{case.id} ({case.why}), {case.rule}: {tally.summary()}\n"
        f"truth (shifted by {sc.offset_ms // WEEK_MS} weeks):\n{_describe(truth)}\n"
        f"alerts:\n{_describe(items)}"
    )
    assert tally.fn == 0, f"missed:\n{detail}"
    assert tally.fp == 0, f"false or duplicate alerts:\n{detail}"
    assert tally.tp == len(real), detail
    assert tally.late_flagged == tally.late_truth, f"a late breach not flagged late:\n{detail}"
