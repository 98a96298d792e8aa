"""`benchmarks.pipeline --pack-hour`: ingest beside the hourly packing (issue 19).

Before the window an hour of every tag's fixes is planted in PostgreSQL as ingest would
have stored them (one fix per tag per interval, in time order), an hour that ended more
than an hour ago; at the window's start `fencewatch archive run` packs it, as the
service's scheduler does every hour: storage.compaction in pieces, giving way while the
workers' heartbeats say ingest is behind. Their rids are below any snapshot's (negative),
so the packing need not wait for one, and a restore never reads them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks import fleet as fleets
from benchmarks.stack import Stack, deployment_env, fencewatch

APP = "fencewatch-packing"  # its connections' application_name, to tell their CPU apart
WAIT_S = 1200.0  # for the packing to end after the window, before it is stopped

_PLANT = (
    "INSERT INTO fixes (rid, device_id, supervisee_id, seq, ts, received_at, lat, lon, acc,"
    " src, spd, hdg, batt, chg, strap, quality, zone_state)"
    " SELECT -(p.step * p.tags + d + 1), 'BT' || lpad(d::text, 6, '0'),"
    "  'BS' || lpad(d::text, 6, '0'), p.step + 1, t, t + interval '2 seconds',"
    "  lat + (random() - 0.5) * 1e-4, lon + (random() - 0.5) * 1e-4, 8 + random() * 20, 'gps',"
    "  0, 0, 80, false, 'closed', 0, 'in'"
    " FROM (SELECT $3::bigint AS step, $4::bigint AS tags, $5::timestamptz AS hour,"
    "   $6::bigint AS every) p,"
    "  unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS h (lat, lon, n),"
    "  LATERAL (SELECT n - 1 AS d) i,"
    "  LATERAL (SELECT p.hour + make_interval(secs => p.step * p.every + d % p.every) AS t) at"
)


class Packing:
    def __init__(self, stack: Stack, fleet: fleets.Fleet, interval: float) -> None:
        self.stack = stack
        self.fleet = fleet
        self.interval = max(int(interval), 1)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.hour = now - timedelta(hours=2)  # closed for more than compaction.AFTER
        self.planted = 0
        self.plant_s = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.follow: asyncio.Task[None] | None = None
        self.minutes: list[int] = []
        self.wall_s: float | None = None

    async def plant(self, pg: asyncpg.Connection) -> None:
        """The hour's fixes, a step of every tag at a time, then its statistics."""
        t0 = time.monotonic()
        lat, lon = self.fleet.lat.tolist(), self.fleet.lon.tolist()
        steps = 3600 // self.interval
        for step in range(steps):
            await pg.execute(_PLANT, lat, lon, step, len(lat), self.hour, self.interval)
        part = f"fixes_{self.hour:%Y_%m_%d}"
        await pg.execute(f'VACUUM ANALYZE "{part}"')
        self.planted = steps * len(lat)
        self.plant_s = round(time.monotonic() - t0, 1)

    async def start(self) -> int:
        """Start packing; its process id."""
        env = deployment_env(self.stack)
        env["FENCEWATCH_DATABASE_URL"] = f"{self.stack.database_url}?application_name={APP}"
        self.started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            fencewatch(),
            "archive",
            "run",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.follow = asyncio.create_task(self._follow(self.proc))
        return self.proc.pid

    async def _follow(self, proc: asyncio.subprocess.Process) -> None:
        """The device-hours packed at each minute of the packing (its own connection), and
        when it ended."""
        pg = await asyncpg.connect(self.stack.database_url)
        try:
            while proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 60)
                    break
                self.minutes.append(
                    await pg.fetchval("SELECT count(*) FROM fixes_hours WHERE hour = $1", self.hour)
                )
            self.wall_s = round(time.monotonic() - self.started, 1)
        finally:
            await pg.close()

    async def packed(self, pg: asyncpg.Connection) -> int:
        """The hour's fixes packed so far."""
        n = await pg.fetchval(
            "SELECT coalesce(sum(cardinality(ts)), 0) FROM fixes_hours WHERE hour = $1", self.hour
        )
        return int(n)

    async def finish(self, pg: asyncpg.Connection, in_window: int) -> dict[str, Any]:
        """What the packing did: its own report when it ended within WAIT_S of the window."""
        assert self.proc is not None and self.follow is not None
        report, ended = None, True
        try:
            out, log = await asyncio.wait_for(self.proc.communicate(), WAIT_S)
        except TimeoutError:
            self.proc.terminate()
            await self.proc.wait()
            ended = False
        finally:
            if self.proc.returncode is None:  # stopped, or the benchmark was
                self.follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follow  # with the packing ended, its follower ends too
        if ended:
            (self.stack.run_dir / "packing.log").write_bytes(log)
            with contextlib.suppress(ValueError, KeyError):
                report = json.loads(out)["packed"]
        return {
            "hour": self.hour.isoformat(),
            "planted": self.planted,
            "plant_s": self.plant_s,
            "packed_in_window": in_window,
            "packed": await self.packed(pg),
            "ended": ended,
            "wall_s": self.wall_s,
            "device_hours_by_minute": self.minutes,
            "report": report,
        }


async def packing_backends(pg: asyncpg.Connection) -> list[int]:
    rows = await pg.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = $1",
        APP,
    )
    return [r["pid"] for r in rows]
