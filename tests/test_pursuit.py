"""Pursuit at the edge (alerts.pursuit), on the real PostgreSQL and Mosquitto: the engine's
"pursue" and "relax" verdicts become downlink commands in the batch's own commit — set_interval
for a tag, OwnTracks commands for a phone — never alerts, and a flapping device gets no
command storm; and the simulated devices obey those commands. The restore runs on a
controlled clock; no timing assertions. (Over the live broker: tests/test_pursuit_live.py.)"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest

from alerts.downlink import DownlinkSender
from alerts.outbox import OutboxMessage
from alerts.pursuit import restore_due
from fencewatch.replay import replay
from geofence.model import Verdict
from ingest.writer import commit
from simulators.build import Rendered, UnintendedError, write
from simulators.device import DevicePlan
from simulators.route import Env, RouteBuilder
from simulators.suite import RECIPES
from simulators.tag import LiveTag
from storage.db import open_pool
from tests.kit import LIANDU_SEAT
from tests.live import eventually
from tests.test_alerting import seed
from tests.test_alerting_live import Subscriber

HOLD = timedelta(seconds=300)


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_dsn, max_size=4)
    try:
        await seed(pool)  # P1 wears tag T1
        yield pool
    finally:
        await pool.close()


def verdict(action: str, device: str = "T1", interval_s: int = 15) -> Verdict:
    return Verdict(
        action,
        "pursuit",
        "P1",
        device,
        int(time.time() * 1000),
        f"pursuit:{device}",
        detail={"interval_s": interval_s} if action == "pursue" else {},
    )


async def judged(pool: asyncpg.Pool, *verdicts: Verdict) -> list[dict[str, Any]]:
    """Commit a batch carrying `verdicts`, as ingest does; the alerts it changed."""
    async with pool.acquire() as conn:
        done = await commit(conn, [], [], {}, [], list(verdicts))
    return done.alerts


async def commands(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT c.device_id, c.type, c.interval_s, c.monitoring, c.issued_by, o.payload"
        " FROM device_commands c JOIN outbox o ON o.payload->'command'->>'id' = c.id::text"
        " ORDER BY o.id"
    )
    return [tuple(r) for r in rows]


async def restore(pool: asyncpg.Pool, after: timedelta = HOLD) -> int:
    return await restore_due(pool, now=datetime.now(UTC) + after, hold=HOLD)


async def test_a_pursued_tag_reports_every_15_s_until_it_has_been_clear_for_the_hold(
    pool: asyncpg.Pool,
) -> None:
    assert await judged(pool, verdict("pursue")) == []
    [(device, kind, interval, monitoring, by, payload)] = await commands(pool)
    assert (device, kind, interval, monitoring, by) == ("T1", "set_interval", 15, None, "pursuit")
    wire = payload["command"]
    assert wire == {"v": 1, "id": wire["id"], "type": "set_interval", "interval_s": 15}
    assert payload.get("topic") is None and payload["supervisee"] == "P1"
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0

    await judged(pool, verdict("pursue"))  # another rule, or a restart re-judging
    assert len(await commands(pool)) == 1

    await judged(pool, verdict("relax"))
    assert await restore(pool, timedelta(0)) == 0  # not clear for long enough yet
    assert await restore(pool) == 1
    assert [c[1:3] for c in await commands(pool)] == [("set_interval", 15), ("set_interval", 30)]
    assert await pool.fetchval("SELECT count(*) FROM device_pursuits") == 0
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0


async def test_a_flapping_tag_stays_fast_and_gets_no_command_storm(pool: asyncpg.Pool) -> None:
    for _ in range(5):
        await judged(pool, verdict("pursue"))
        await judged(pool, verdict("relax"))
        assert await restore(pool, timedelta(seconds=60)) == 0
    assert [c[1:3] for c in await commands(pool)] == [("set_interval", 15)]
    assert await restore(pool) == 1
    # A new spell after the restore is pursued afresh.
    await judged(pool, verdict("pursue"))
    assert [c[2] for c in await commands(pool)] == [15, 30, 15]


async def test_the_normal_interval_restored_is_the_devices_own(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE devices SET report_interval_s = 60 WHERE id = 'T1'")
    await judged(pool, verdict("pursue"), verdict("relax"))
    await restore(pool)
    assert [c[2] for c in await commands(pool)] == [15, 60]


async def test_a_tag_already_reporting_fast_is_left_alone(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE devices SET report_interval_s = 10 WHERE id = 'T1'")
    await judged(pool, verdict("pursue"))
    await judged(pool, verdict("relax"))
    assert await restore(pool) == 0
    assert await commands(pool) == []


async def test_an_unregistered_device_or_an_http_phone_is_not_commanded(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute("INSERT INTO devices (id, kind) VALUES ('PH2', 'phone')")  # Traccar Client
    for device in ("GHOST", "PH2"):
        await judged(pool, verdict("pursue", device=device), verdict("relax", device=device))
    assert await restore(pool) == 0
    assert await commands(pool) == []


async def test_an_owntracks_phone_is_asked_for_a_fix_and_move_mode_then_significant(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(
        "INSERT INTO devices (id, kind, owntracks) VALUES ('PH1', 'phone', 'zhang/iphone')"
    )
    await judged(pool, verdict("pursue", device="PH1"))
    await judged(pool, verdict("relax", device="PH1"))
    await restore(pool)
    sent = await commands(pool)
    assert [(c[1], c[2], c[3]) for c in sent] == [
        ("report_location", None, None),
        ("set_monitoring", 15, 2),
        ("set_monitoring", None, 1),
    ]
    assert {c[5]["topic"] for c in sent} == {"owntracks/zhang/iphone/cmd"}
    # The app's own command format (owntracks.org/booklet/tech/json, `_type=cmd`).
    assert [c[5]["wire"] for c in sent] == [
        {"_type": "cmd", "action": "reportLocation"},
        {
            "_type": "cmd",
            "action": "setConfiguration",
            "configuration": {
                "_type": "configuration",
                "monitoring": 2,
                "moveModeLocatorInterval": 15,
            },
        },
        {
            "_type": "cmd",
            "action": "setConfiguration",
            "configuration": {"_type": "configuration", "monitoring": 1},
        },
    ]


async def test_the_downlink_publishes_owntracks_commands_on_the_phones_topic(
    pool: asyncpg.Pool, mqtt_url: str
) -> None:
    phone = Subscriber(mqtt_url, "owntracks/zhang/iphone/cmd")
    sender = DownlinkSender(mqtt_url, f"test-downlink-{uuid.uuid4().hex[:8]}")
    try:
        await asyncio.wait_for(phone.subscribed.wait(), 30)
        await pool.execute(
            "INSERT INTO devices (id, kind, owntracks) VALUES ('PH1', 'phone', 'zhang/iphone')"
        )
        await judged(pool, verdict("pursue", device="PH1"))
        sent = await commands(pool)
        sender.start()

        async def connected() -> bool:
            return sender.connected

        await eventually(connected, "the downlink never connected")
        for n, c in enumerate(sent):
            message = OutboxMessage(n + 1, "downlink", "PH1", c[5], 1)
            assert await sender.deliver(message) == "broker_acked"
        received = [await phone.next() for _ in sent]
        assert received == [("owntracks/zhang/iphone/cmd", c[5]["wire"]) for c in sent]
        assert msgspec.json.encode(received[0][1]) == b'{"_type":"cmd","action":"reportLocation"}'
    finally:
        sender.stop()
        phone.close()


# -- the simulated devices obey -----------------------------------------------------------------

T0 = 1_764_000_000_000


class Link:
    """Records what a simulated device publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def ready(self) -> bool:
        return True

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, msgspec.json.decode(payload)))
        return True

    def times(self, topic: str) -> list[int]:
        return [p["ts"] if "ts" in p else p["tst"] * 1000 for t, p in self.sent if t == topic]


def still(kind: str = "tag", hours: float = 2) -> LiveTag:
    track = RouteBuilder(np.random.default_rng(1), T0, *LIANDU_SEAT).stay(hours * 3600, Env.OUTDOOR)
    owntracks = "zhang/iphone" if kind == "phone" else None
    return LiveTag(DevicePlan("D1", track.track(), kind, owntracks, seed=1), interval_s=30)


def run(device: LiveTag, link: Link, start: int, end: int) -> None:
    for now in range(start, end, 1_000):
        device.step(now, link)


def gaps(times: list[int]) -> list[int]:
    """Seconds between reports, to the nearest 5 (a tag's clock jitters a little)."""
    return [5 * round((b - a) / 5000) for a, b in itertools.pairwise(times)]


def phases(steps: list[int], normal: int = 30) -> list[tuple[int, int]]:
    """(interval, how many reports) of each stretch of 15 s or `normal` reporting, in order;
    the one gap where a tag switched may be anything between the two."""
    kept = (s for s in steps if s in (15, normal))
    return [(k, len(list(g))) for k, g in itertools.groupby(kept)]


def test_a_simulated_tag_obeys_set_interval_once_per_command_and_acknowledges_it() -> None:
    tag, link = still(), Link()
    run(tag, link, T0, T0 + 300_000)
    fast = msgspec.json.encode({"v": 1, "id": "c1", "type": "set_interval", "interval_s": 15})
    tag.command(fast, link)
    run(tag, link, T0 + 300_000, T0 + 600_000)
    tag.command(fast, link)  # a QoS 1 redelivery
    run(tag, link, T0 + 600_000, T0 + 660_000)
    back = {"v": 1, "id": "c2", "type": "set_interval", "interval_s": 30}
    tag.command(msgspec.json.encode(back), link)
    tag.command(b"{not json", link)
    run(tag, link, T0 + 660_000, T0 + 960_000)
    # 30 s, then from the first command to the second (6 minutes) 15 s, then 30 s again.
    assert phases(gaps(link.times("em/D1/loc"))) == [(30, 10), (15, 23), (30, 10)]
    acks = [(t, p) for t, p in link.sent if t == "em/D1/cmd/ack"]
    assert acks == [
        ("em/D1/cmd/ack", {"v": 1, "id": c, "type": "ack"}) for c in ("c1",) * 2 + ("c2",)
    ]


def test_a_simulated_owntracks_phone_reports_on_request_and_in_move_mode() -> None:
    phone, link = still("phone"), Link()
    topic = "owntracks/zhang/iphone"
    run(phone, link, T0, T0 + 60_000)
    assert [p.get("t") for _, p in link.sent] == ["u"]  # then nothing: it is not moving
    phone.command(b'{"_type":"cmd","action":"reportLocation"}', link)
    move = {
        "_type": "cmd",
        "action": "setConfiguration",
        "configuration": {"_type": "configuration", "monitoring": 2, "moveModeLocatorInterval": 15},
    }
    phone.command(msgspec.json.encode(move), link)
    run(phone, link, T0 + 60_000, T0 + 240_000)
    significant = {**move, "configuration": {"_type": "configuration", "monitoring": 1}}
    phone.command(msgspec.json.encode(significant), link)
    run(phone, link, T0 + 240_000, T0 + 480_000)
    fixes = [p for t, p in link.sent if t == topic]
    assert [p.get("t") for p in fixes[1:3]] == ["r", "t"]
    moving = [p for p in fixes if p["m"] == 2]
    assert len(moving) == 12 and set(gaps(link.times(topic)[1:13])) == {15}
    assert len(fixes) == 13 and fixes[-1]["m"] == 2  # significant mode again: silent while still
    assert phone.command_topic == f"{topic}/cmd"


# -- generated scenarios: a closed loop -------------------------------------------------------


def test_generated_devices_obey_the_service_and_replay_judges_what_they_sent(
    tmp_path: Path,
) -> None:
    for attempt in range(20):  # the suite's own way past a draw that went somewhere unmeant
        rng = np.random.default_rng((5, attempt))
        scenario = RECIPES["exit_walk"](rng)
        seed = int(rng.integers(2**31))
        try:
            plain, pursued = scenario.render(seed), scenario.render(seed, pursuit=True)
        except UnintendedError:
            continue
        break
    assert scenario.render(seed, pursuit=True).pings == pursued.pings  # deterministic
    [walker] = [e["device"] for e in pursued.truth if e["type"] == "jurisdiction_exit"]
    [normal] = [d.interval_s for p in scenario.people for d in p.devices if d.id == walker]
    # The others were never told anything: their pings are as without pursuit.
    assert [p for p in pursued.pings if walker not in p.topic] == [
        p for p in plain.pings if walker not in p.topic
    ]
    fixes = sorted(
        e["ts"]
        for p in pursued.pings
        if p.topic == f"em/{walker}/loc"
        for e in p.payload.get("batch", [p.payload])
    )
    # The tag's own interval until the walk out, 15 s from the first fix outside (and its
    # own again if the walker came back and stayed in for the hold).
    [(slow, before), (fast, during), *after] = phases(gaps(sorted(set(fixes))), int(normal))
    assert (slow, fast) == (normal, 15) and before > 10 and during > 10
    assert [k for k, _ in after] in ([], [normal])

    def alerts(rendered: Rendered, name: str) -> list[str]:
        write(tmp_path / name, rendered)
        out = io.StringIO()
        replay(tmp_path / name, out, io.StringIO())
        return [msgspec.json.decode(line)["type"] for line in out.getvalue().splitlines()]

    assert alerts(plain, "plain") == alerts(pursued, "pursued") == ["jurisdiction_exit"]
