"""The JT/T 808 gateway on the real broker and database: a terminal registers, authenticates
and walks out of 莲都区 over TCP → one jurisdiction_exit through the API, commands reach it
as JT/T 808 messages and its answer is recorded; hostile connections cost only themselves."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import msgspec
import numpy as np
import pytest
from prometheus_client import REGISTRY

from fencewatch.embedded import free_port, wait_for_port
from ingest.jt808 import commands as platform
from ingest.jt808 import downlink, messages, terminals
from ingest.jt808.frame import encode
from ingest.jt808.gateway import Gateway, Limits
from simulators.demo import build_demo
from simulators.device import FleetPlan
from simulators.fleet import DeviceClock, run_fleet
from simulators.jt808 import ALARM_EMERGENCY, line
from simulators.jt808 import Terminal as SimulatedTerminal
from simulators.route import Track
from storage.db import open_pool
from tests.jt808_terminal import Terminal
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection, offset
from tests.live import eventually, load_roster, running
from tests.test_live_ingest import walk_out

PHONE = "013912345678"  # as a 2013 terminal sends it; the roster has it without the 0
OTHER = "13800000002"


def roster(*numbers: str) -> dict:
    return {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {
                "id": f"S{k + 1}",
                "jurisdiction": [LIANDU],
                "devices": [{"id": f"T{k + 1}", "jt808": number.lstrip("0")}],
            }
            for k, number in enumerate(numbers)
        ],
    }


async def enrol_all(pool: asyncpg.Pool) -> None:
    """What `fencewatch devices provision` does for new terminals: they may register."""
    async with pool.acquire() as conn:
        await terminals.open_enrolment(conn)


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("fencewatch_jt808_dropped_total", {"reason": reason}) or 0.0


async def test_a_terminal_walking_out_of_liandu_raises_one_exit(
    pg_dsn, redis_url, mqtt_url
) -> None:
    port = free_port()
    async with running(
        pg_dsn,
        redis_url,
        mqtt_url,
        lishui_collection(),
        roster(PHONE),
        tamper=enrol_all,
        jt808_port=port,
    ) as live:
        gateway = live.service.jt808
        assert gateway is not None
        await eventually(lambda: _true(gateway.ready), "the gateway never reached the broker")
        # The simulated terminal walks the last five minutes into 青田, a fix every 10 s
        # of its clock, which runs 30 times the wall's and reaches now as it arrives.
        fixes = walk_out()
        clock = DeviceClock(rate=30, start_ms=fixes[0]["ts"])
        track = Track(
            np.array([f["ts"] for f in fixes], dtype=np.int64),
            np.array([f["lat"] for f in fixes]),
            np.array([f["lon"] for f in fixes]),
            np.zeros(len(fixes), dtype=np.int8),
        )
        terminal = SimulatedTerminal(PHONE, track, interval_s=10, clock=clock)
        stop = asyncio.Event()
        walking = asyncio.create_task(terminal.run("127.0.0.1", port, stop))
        try:
            [alert] = await eventually(
                lambda: live.alerts(supervisee="S1", type="jurisdiction_exit"), "no exit alert"
            )
            assert alert["device"] == "T1" and alert["late"] is False
            assert terminal.auth_code is not None and terminal.sessions == 1

            # 责令立即返回 from the alert reaches the terminal as a text read aloud, and its
            # answer is recorded as the device's acknowledgement.
            r = await live.http.post(f"/api/v1/alerts/{alert['id']}/command", json={})
            assert r.status_code == 202, r.text
            command = r.json()

            async def acknowledged() -> bool | None:
                r = await live.http.get(f"/api/v1/alerts/{alert['id']}/commands")
                [sent] = [c for c in r.json()["items"] if c["id"] == command["id"]]
                return sent["status"] == "acknowledged_by_device" or None

            await eventually(acknowledged, "the terminal's answer was not recorded")
            assert command["text"] in terminal.texts

            # 立即定位: a location query; the terminal's 0x0201 is the answer and the
            # acknowledgement.
            r = await live.http.post("/api/v1/supervisees/S1/locate", json={})
            assert r.status_code == 202, r.text
            request = r.json()["id"]

            async def located() -> dict | None:
                r = await live.http.get(f"/api/v1/supervisees/S1/locate/{request}")
                [asked] = r.json()["devices"]
                done = asked["answer"] and asked["command_status"] == "acknowledged_by_device"
                return asked if done else None

            asked = await eventually(located, "the location query was not answered")
            assert asked["device"] == "T1" and asked["via"] == "downlink"

            # Its SOS button: the emergency alarm bit, an sos alert.
            terminal.alarm = ALARM_EMERGENCY
            await eventually(lambda: live.alerts(supervisee="S1", type="sos"), "no SOS alert")
            await eventually(lambda: _true(not terminal.unacked), "fixes left unanswered")
        finally:
            stop.set()
            await walking
        stored = await live.service.pool.fetchval("SELECT count(*) FROM fixes")
        # Every fix the terminal was answered for, and its answers to the location queries
        # that came with the return orders (which it does not count).
        assert stored >= terminal.acked
        assert len(await live.alerts(supervisee="S1", type="jurisdiction_exit")) == 1

        # Once registered, the terminal cannot be registered again (a phone number is no
        # secret); a wrong code is refused; the right one on a new connection works.
        again = await Terminal(PHONE).connect(port)
        assert (await again.register()).result == platform.TERMINAL_TAKEN
        assert await again.authenticate("guessed") == platform.FAILURE
        assert await again.authenticate(terminal.auth_code) == platform.OK
        again.close()

        health = (await live.http.get("/healthz")).json()
        assert health["components"]["jt808"] is True


async def _true(value: bool) -> bool | None:
    return value or None


async def _status(probe: Callable[[], Awaitable[str]], wanted: str) -> bool | None:
    return await probe() == wanted or None


@asynccontextmanager
async def gateway_alone(
    pg_dsn: str, mqtt_url: str, tmp_path, limits: Limits
) -> AsyncIterator[tuple[int, asyncpg.Pool]]:
    await load_roster(pg_dsn, tmp_path, roster(PHONE, OTHER))
    pool = await open_pool(pg_dsn, min_size=1, max_size=4)
    await enrol_all(pool)
    gateway = Gateway(pool, mqtt_url, f"jt808-test-{time.time_ns()}", limits)
    port = free_port()
    sock = socket.create_server(("127.0.0.1", port))
    task = asyncio.create_task(gateway.serve(sock))
    try:
        await eventually(lambda: _true(gateway.ready), "the gateway never reached the broker")
        yield port, pool
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()


async def test_hostile_connections_cost_only_themselves(pg_dsn, mqtt_url, tmp_path) -> None:
    limits = Limits(auth_timeout_s=1.0, max_unauthenticated=4, max_errors=3)
    async with gateway_alone(pg_dsn, mqtt_url, tmp_path, limits) as (port, pool):
        good = await Terminal(PHONE).connect(port)
        code = (await good.register()).auth_code
        assert await good.authenticate(code) == platform.OK
        now = time.time_ns() // 1_000_000

        # Before authentication nothing but registration and authentication is taken.
        eve = await Terminal(OTHER).connect(port)
        serial = await eve.send(messages.LOCATION, messages.location_body(28.4, 119.9, now))
        assert await eve.answer_to(serial) == platform.FAILURE
        # An unknown terminal is told so.
        stranger = await Terminal("19999999999").connect(port)
        assert (await stranger.register()).result == platform.NO_SUCH_TERMINAL

        # Bad checksums, garbage, truncated and oversized frames: skipped and counted,
        # and a connection that keeps sending them is cut off.
        frame = bytearray(encode(messages.HEARTBEAT, OTHER, 1))
        frame[-2] ^= 0x55
        before = dropped("bad_checksum"), dropped("too_many_errors")
        noisy = await Terminal(OTHER).connect(port)
        await noisy.raw(bytes(frame))
        await noisy.raw(b"\x7e\x00\x02\x00\x7e")  # truncated
        await noisy.raw(b"\x7e" + b"\x11" * 5000 + b"\x7e")  # longer than any frame
        await noisy.raw(b"\x7e" + b"\x22" * 100 + b"\x7e")
        assert await noisy.closed()
        assert dropped("bad_checksum") == before[0] + 1
        assert dropped("too_many_errors") == before[1] + 1

        # Slow loris: a connection that never authenticates is closed.
        slow = await Terminal(OTHER).connect(port)
        await slow.raw(b"\x7e\x01")
        assert await slow.closed()
        assert dropped("auth_timeout") >= 1

        # A flood of connections: past the cap of unauthenticated ones, closed at once.
        flood = [await Terminal(OTHER).connect(port) for _ in range(8)]
        assert [await f.closed() for f in flood].count(True) == 8  # all gone, sooner or later
        assert dropped("too_many_unauthenticated") >= 1

        # Random bytes with flags and escapes among them, on connections one after another:
        # each ends the way it may, and none takes the gateway with it.
        rng = random.Random(808)
        for _ in range(6):
            noise = await Terminal(OTHER).connect(port)
            junk = bytes(rng.choice(b"\x7e\x7d\x01\x02\x00\xff") for _ in range(3000))
            await noise.raw(junk + bytes(rng.getrandbits(8) for _ in range(3000)))
            assert await noise.closed()

        # A terminal's own messages the platform does not read (0x0900 pass-through, as
        # wristbands send their step counts) are answered "unsupported", however many.
        for _ in range(limits.max_errors + 5):
            serial = await good.send(0x0900, b"\xf1steps=1234")
            assert await good.answer_to(serial) == platform.UNSUPPORTED

        # Through all of it the authenticated terminal was served.
        assert await good.report(*LIANDU_SEAT, now) == platform.OK
        for t in (good, eve, stranger):
            t.close()
        assert await pool.fetchval("SELECT count(*) FROM devices WHERE jt808_auth IS NOT NULL") == 1


def start_gateway(
    env: dict[str, str], port: int, probes: int, log: Path
) -> subprocess.Popen[bytes]:
    """`fencewatch jt808` as its own process, listening on `port`, health and metrics on
    `probes`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fencewatch.cli", "jt808"],
            env={
                **os.environ,
                **env,
                "FENCEWATCH_JT808": f"127.0.0.1:{port}",
                "FENCEWATCH_HTTP": f"127.0.0.1:{probes}",
            },
            stdout=out,
            stderr=out,
        )
    wait_for_port(port, proc=proc)
    return proc


async def test_a_gateway_killed_mid_stream_loses_no_acknowledged_fix(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    port, probes = free_port(), free_port()
    env = {
        "FENCEWATCH_DATABASE_URL": pg_dsn,
        "FENCEWATCH_REDIS_URL": redis_url,
        "FENCEWATCH_MQTT_URL": mqtt_url,
        "FENCEWATCH_DATA_DIR": str(tmp_path / "var"),
        "FENCEWATCH_MQTT_CLIENT_ID": f"jt808-kill-{time.time_ns()}",
    }
    log = tmp_path / "gateway.log"
    async with running(
        pg_dsn, redis_url, mqtt_url, lishui_collection(), roster(PHONE), tamper=enrol_all
    ) as live:
        gateway = await asyncio.to_thread(start_gateway, env, port, probes, log)
        # A fix a second of the terminal's clock, twenty to the real second, in the past
        # hour: a steady stream, each fix stored apart (seq is the fix's second).
        clock = DeviceClock(rate=20, start_ms=time.time_ns() // 1_000_000 - 3_600_000)
        track = line(LIANDU_SEAT, offset(LIANDU_SEAT, 3000, 3000), clock.now(), 1.4)
        terminal = SimulatedTerminal(PHONE, track, interval_s=1, retry_s=0.2, clock=clock)
        stop = asyncio.Event()
        streaming = asyncio.create_task(terminal.run("127.0.0.1", port, stop))
        try:
            await eventually(lambda: _true(terminal.acked >= 100), "the terminal was not heard")
            gateway.kill()  # SIGKILL, with the terminal's fixes in flight
            await asyncio.to_thread(gateway.wait)
            killed_at = terminal.acked
            # A command given while the gateway is down waits for it in the broker.
            r = await live.http.post("/api/v1/supervisees/S1/locate", json={})
            assert r.status_code == 202, r.text
            request = r.json()["id"]

            async def command_status() -> str:
                r = await live.http.get(f"/api/v1/supervisees/S1/locate/{request}")
                return str(r.json()["devices"][0]["command_status"])

            await eventually(
                lambda: _status(command_status, "delivered_to_broker"),
                "the command did not reach the broker",
            )
            gateway = await asyncio.to_thread(start_gateway, env, port, probes, log)
            # It reconnects, authenticates with the code it kept, uploads what was not
            # acknowledged as a blind-area batch, and reports on; and it is asked where
            # it is, and answers.
            await eventually(
                lambda: _true(terminal.sessions >= 2 and terminal.acked >= killed_at + 100),
                "the terminal did not report through the restarted gateway",
            )
            await eventually(
                lambda: _status(command_status, "acknowledged_by_device"),
                "the command given while the gateway was down did not reach the terminal",
            )
            await eventually(lambda: _true(not terminal.unacked), "fixes left unacknowledged")
            stop.set()
            await streaming
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{probes}") as http:
                health = await http.get("/healthz")
                assert health.status_code == 200, health.text
                assert health.json()["components"]["jt808"] is True
                assert "fencewatch_jt808_fixes_total" in (await http.get("/metrics")).text
        finally:
            stop.set()
            gateway.kill()
            await asyncio.to_thread(gateway.wait)
        acknowledged = terminal.acked

        async def stored() -> int | None:
            n = await live.service.pool.fetchval("SELECT count(*) FROM fixes")
            return n if n >= acknowledged else None

        # Every fix the terminal was told the platform had is stored, once.
        assert await eventually(stored, "acknowledged fixes were lost") == acknowledged


async def test_the_demo_fleets_wristbands_report_through_the_gateway(
    pg_dsn, redis_url, mqtt_url
) -> None:
    zones, demo_roster, plan = build_demo(13)
    wristbands = tuple(d for d in plan.devices if d.jt808 is not None)
    assert [d.id for d in wristbands] == ["T012", "T013"]
    port = free_port()
    async with running(
        pg_dsn, redis_url, mqtt_url, zones, demo_roster, tamper=enrol_all, jt808_port=port
    ) as live:
        stop = asyncio.Event()
        fleet = asyncio.create_task(
            run_fleet(
                mqtt_url,
                FleetPlan(plan.start_ms, wristbands),
                stop,
                interval_s=2,
                jt808_address=("127.0.0.1", port),
            )
        )
        try:

            async def both() -> bool | None:
                rows = await live.service.pool.fetch("SELECT DISTINCT device_id FROM fixes")
                return {r["device_id"] for r in rows} == {"T012", "T013"} or None

            await eventually(both, "the wristbands' fixes were not stored")
        finally:
            stop.set()
            await fleet


def test_each_command_becomes_the_messages_a_terminal_takes() -> None:
    def sent(command: dict) -> list[tuple[int, str | None]]:
        out = downlink.outgoing(msgspec.json.encode({"v": 1, "id": "c1", **command}))
        return [(o.msg_id, o.command) for o in out]

    text, query = platform.TEXT_MESSAGE, platform.LOCATION_QUERY
    assert sent({"type": "message", "text": "明天九点报到"}) == [(text, "c1")]
    assert sent({"type": "vibrate"}) == [(text, "c1")]
    assert sent({"type": "return_now", "text": "立即返回"}) == [(text, "c1"), (query, None)]
    assert sent({"type": "set_interval", "interval_s": 15}) == [
        (platform.SET_PARAMETERS, "c1"),
        (query, None),
    ]
    assert sent({"type": "locate"}) == [(query, "c1")]
    [order, _] = downlink.outgoing(
        msgspec.json.encode({"v": 1, "id": "c1", "type": "return_now", "text": "立即返回"})
    )
    shown = platform.read_text_message(order.body)
    assert shown.text == "立即返回"  # urgent, on the display and read aloud
    assert shown.flags == platform.TEXT_EMERGENCY | platform.TEXT_DISPLAY | platform.TEXT_TTS
    [interval, _] = downlink.outgoing(
        msgspec.json.encode({"v": 1, "id": "c1", "type": "set_interval", "interval_s": 15})
    )
    params = platform.read_parameters(interval.body)
    assert int.from_bytes(params[platform.DEFAULT_REPORT_INTERVAL]) == 15
    for bad in ({"type": "self_destruct"}, {"type": "set_interval"}, {"type": "message"}):
        with pytest.raises(ValueError):
            sent(bad)
