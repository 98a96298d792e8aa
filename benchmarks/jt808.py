"""`python -m benchmarks.jt808`: fixes a second through the JT/T 808 gateway into the spine,
on this machine — terminals over TCP → gateway → broker (QoS 1) → ingest → PostgreSQL.

One private Mosquitto, a fresh database and `fencewatch serve` (benchmarks.stack), its
gateway on a port of its own (or, with `--apart`, `fencewatch jt808` as a second process
and serve without one). `--terminals` terminals, each with the number of a roster device,
register, authenticate, and then report 0x0200 locations as fast as the gateway answers,
each keeping `--window` reports unanswered at most (a real terminal keeps one or a few;
more stands for more terminals). A terminal's fixes are a second apart in its own clock,
which starts a minute behind the wall, so every fix is stored apart (seq is the fix's
second) and is a live one. For `--duration` seconds; then the run waits until ingest has
stored every fix the gateway acknowledged.

Prints one JSON object: fixes acknowledged to the terminals a second (`acked_per_s`: the
gateway's PUBACK-gated answers), fixes stored a second from the first report to the last
commit (`stored_per_s`), the two counts (equal: nothing acknowledged was lost), and the
machine with its load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import fleet as fleets
from benchmarks import procs
from benchmarks.pipeline import PG_ADMIN
from benchmarks.stack import ROOT, ServiceProcess, Stack, running
from fencewatch import embedded
from ingest.jt808 import commands as platform
from ingest.jt808 import messages, terminals
from ingest.jt808.frame import Frame, FrameReader, encode
from simulators.geo import offset

NUMBERS = 13_900_000_000  # the terminals' numbers: this plus the device's place in the roster
ANSWER_S = 30.0  # a gateway that answers nothing this long has failed the run
LOGIN_TRIES, RETRY_S = 20, 0.5


async def bench(opts: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    machine = procs.machine()
    fleet = fleets.build(opts.terminals, 0.0, opts.seed)
    async with running(run_dir, opts.pg_admin, None, fleet, False, False) as stack:
        numbers = await _terminals(stack)
        port = embedded.free_port()
        gateway_env = {"FENCEWATCH_JT808": f"127.0.0.1:{port}"}
        service = ServiceProcess(
            stack, 0, 1, "ingest,api,scheduler", {} if opts.apart else gateway_env
        )
        apart = _gateway(stack, gateway_env) if opts.apart else None
        try:
            await service.ready(1)
            await asyncio.to_thread(embedded.wait_for_port, port, 60.0)
            start = time.perf_counter()
            stop = time.perf_counter() + opts.duration
            acked = sum(
                await asyncio.gather(
                    *(
                        _terminal(number, port, fleet, k, stop, opts.window)
                        for k, number in enumerate(numbers)
                    )
                )
            )
            sent_for = time.perf_counter() - start
            stored = await _stored(stack, acked, opts.drain)
            stored_for = time.perf_counter() - start
        finally:
            if apart is not None:
                apart.terminate()
                apart.wait(30)
            await service.stop()
    return {
        "terminals": opts.terminals,
        "window": opts.window,
        "apart": opts.apart,
        "duration_s": opts.duration,
        "acked": acked,
        "stored": stored,
        "acked_per_s": round(acked / sent_for),
        "stored_per_s": round(stored / stored_for),
        "machine": {**machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
    }


async def _terminals(stack: Stack) -> list[str]:
    """Every roster device a JT/T 808 terminal's, open for registration; their numbers."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            "UPDATE devices d SET jt808 = ($1::bigint + r.n)::text"
            " FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM devices) r"
            " WHERE d.id = r.id",
            NUMBERS,
        )
        await terminals.open_enrolment(conn)
        rows = await conn.fetch("SELECT jt808 FROM devices ORDER BY id")
    finally:
        await conn.close()
    return [r["jt808"] for r in rows]


def _gateway(stack: Stack, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FENCEWATCH_DATABASE_URL": stack.database_url,
        "FENCEWATCH_REDIS_URL": stack.redis_url,
        "FENCEWATCH_MQTT_URL": f"mqtt://{stack.mqtt}",
        "FENCEWATCH_HTTP": f"127.0.0.1:{embedded.free_port()}",
        "FENCEWATCH_MQTT_CLIENT_ID": f"fencewatch-bench-{stack.database}",
        "FENCEWATCH_DATA_DIR": str(stack.run_dir / "gateway"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **settings,
    }
    with open(stack.run_dir / "gateway.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fencewatch.cli", "jt808"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


async def _terminal(
    number: str, port: int, fleet: fleets.Fleet, k: int, stop: float, window: int
) -> int:
    """One terminal: logs in, then reports until `stop` with up to `window` unanswered;
    returns how many of its fixes the gateway acknowledged."""
    serial = 0

    def send(msg_id: int, body: bytes) -> None:
        nonlocal serial
        writer.write(encode(msg_id, number, serial, body))
        serial += 1

    async def read() -> list[Frame]:
        async with asyncio.timeout(ANSWER_S):
            data = await reader.read(65536)
        if not data:
            raise ConnectionError(f"terminal {number}: the gateway closed the connection")
        return [item for item in frames.feed(data) if isinstance(item, Frame)]

    async def answer(msg_id: int) -> Frame:
        while True:
            for item in await read():
                if item.msg_id == msg_id:
                    return item

    # Many terminals connecting at once meet the gateway's cap on connections not yet
    # authenticated (a reconnection storm does too): refused, a terminal tries again.
    code = None
    for attempt in range(LOGIN_TRIES):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frames = FrameReader()
        try:
            if code is None:
                send(messages.REGISTRATION, messages.registration_body(number))
                registered = await answer(platform.REGISTRATION_RESPONSE)
                code = platform.read_registration_response(registered.body).auth_code
            send(messages.AUTHENTICATION, messages.authentication_body(code))
            await answer(platform.GENERAL_RESPONSE)
            break
        except ConnectionError:
            writer.close()
            if attempt == LOGIN_TRIES - 1:
                raise
            await asyncio.sleep(RETRY_S)
    home = (float(fleet.lat[k]), float(fleet.lon[k]))
    # A fix's time has whole seconds and is its dedupe key, so each report is a second after
    # the last; a terminal answered fast sends far more than one a second, so its times start
    # an hour back, not to run past the 10 minutes ahead of arrival that ingest accepts.
    ts = (time.time_ns() // 1_000_000 // 1000 - 3600) * 1000
    acked = inflight = 0
    try:
        while time.perf_counter() < stop or inflight:
            while inflight < window and time.perf_counter() < stop:
                lat, lon = offset(home[0], home[1], (acked + inflight) % 50, 0.0)
                body = messages.location_body(float(lat), float(lon), ts, satellites=9)
                send(messages.LOCATION, body)
                ts += 1000
                inflight += 1
            await writer.drain()
            for item in await read():
                if item.msg_id == platform.GENERAL_RESPONSE:
                    response = platform.read_general_response(item.body)
                    if response.msg_id == messages.LOCATION:
                        inflight -= 1
                        acked += response.result == platform.OK
    finally:
        writer.close()
    return acked


async def _stored(stack: Stack, acked: int, drain_s: float) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        deadline = time.perf_counter() + drain_s
        while True:
            stored = int(await conn.fetchval("SELECT count(*) FROM fixes"))
            if stored >= acked or time.perf_counter() > deadline:
                return stored
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.jt808", description=__doc__)
    p.add_argument("--terminals", type=int, default=200, help="terminals, one connection each")
    p.add_argument("--window", type=int, default=4, help="unanswered reports per terminal")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of reporting")
    p.add_argument("--apart", action="store_true", help="the gateway as its own process")
    p.add_argument("--drain", type=float, default=120.0, help="s to wait for the last commits")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL DSN allowed to CREATE DATABASE")
    opts = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-bench-jt808-") as tmp:
        result = asyncio.run(bench(opts, Path(tmp)))
    print(json.dumps(result))
    return 0 if result["stored"] >= result["acked"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
