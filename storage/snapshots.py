"""Engine state, written behind and restored at start.

A snapshot records the state with the last fix and event it had judged. On start the
newest snapshot is restored and every fix and event committed after it is judged again, in
commit order; alerts they raise are already recorded (same keys), so nothing is raised
twice and nothing that was committed is forgotten."""

from __future__ import annotations

from alerts.store import apply
from fencewatch.timefmt import epoch_ms
from geofence.engine import Engine
from geofence.model import DeviceEvent, Fix, Quality
from geofence.ruleset import RuleSet
from storage.db import Conn

KEEP = 3
CHUNK = 5000


async def save(conn: Conn, engine: Engine, last_rid: int, last_event_rid: int) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO engine_snapshots (last_rid, last_event_rid, state) VALUES ($1, $2, $3)",
            last_rid,
            last_event_rid,
            engine.snapshot(),
        )
        await conn.execute(
            "DELETE FROM engine_snapshots WHERE id NOT IN"
            " (SELECT id FROM engine_snapshots ORDER BY id DESC LIMIT $1)",
            KEEP,
        )


async def restore(conn: Conn, rules: RuleSet) -> tuple[Engine, int, int, int]:
    """(engine, last fix rid, last event rid, how many fixes and events were re-judged)."""
    row = await conn.fetchrow(
        "SELECT last_rid, last_event_rid, state FROM engine_snapshots ORDER BY id DESC LIMIT 1"
    )
    engine = Engine.restore(rules, row["state"]) if row else Engine(rules)
    last_rid = row["last_rid"] if row else 0
    last_event_rid = row["last_event_rid"] if row else 0
    rejudged = 0
    while True:
        rows = await conn.fetch(
            "SELECT rid, device_id, seq, ts, received_at, lat, lon, acc, src, spd, hdg, batt,"
            " chg, strap, quality FROM fixes WHERE rid > $1 ORDER BY rid LIMIT $2",
            last_rid,
            CHUNK,
        )
        if not rows:
            break
        last_rid = rows[-1]["rid"]
        fixes = [
            Fix(
                device=r["device_id"],
                seq=r["seq"],
                ts=epoch_ms(r["ts"]),
                at=epoch_ms(r["received_at"]),
                lat=r["lat"],
                lon=r["lon"],
                acc=r["acc"],
                src=r["src"],
                spd=r["spd"],
                hdg=r["hdg"],
                batt=r["batt"],
                chg=r["chg"],
                strap=r["strap"],
                gcj02=bool(r["quality"] & Quality.GCJ02),
            )
            for r in rows
            if r["device_id"] in rules.device_owner
        ]
        rejudged += len(rows)
        outcome = engine.process(fixes)
        async with conn.transaction():
            await apply(conn, outcome.verdicts)
    rows = await conn.fetch(
        "SELECT rid, device_id, seq, ts, received_at, type FROM device_events WHERE rid > $1"
        " ORDER BY rid",
        last_event_rid,
    )
    if rows:
        last_event_rid = rows[-1]["rid"]
        events = [
            DeviceEvent(
                r["device_id"], r["seq"], epoch_ms(r["ts"]), epoch_ms(r["received_at"]), r["type"]
            )
            for r in rows
            if r["device_id"] in rules.device_owner
        ]
        rejudged += len(rows)
        async with conn.transaction():
            await apply(conn, engine.process((), events).verdicts)
    return engine, last_rid, last_event_rid, rejudged
