"""Commit one judged batch in one transaction: fixes, device events, rejected messages, the
alerts the batch raised and the pursuit commands it calls for (alerts.pursuit). The broker
is acknowledged only after this returns.

Fixes are COPYed straight into `fixes`; only when that meets a fix already stored (a QoS 1
redelivery) is the batch staged and inserted-if-new instead, so each fix is stored once
and the common case costs the database a third less."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from alerts import pursuit
from alerts.record import apply
from geofence.engine import zone_state
from geofence.judge import Judged
from geofence.model import DeviceEvent, Verdict
from ingest.decode import DetailedEvent, Rejection
from storage.db import Conn

_COLUMNS = (
    "device_id",
    "supervisee_id",
    "seq",
    "ts",
    "received_at",
    "lat",
    "lon",
    "acc",
    "src",
    "spd",
    "hdg",
    "batt",
    "chg",
    "strap",
    "quality",
    "zone_state",
)
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS fixes_stage ON COMMIT DELETE ROWS AS SELECT "
    + ", ".join(_COLUMNS)
    + " FROM fixes WITH NO DATA"
)
_MOVE = (
    f"INSERT INTO fixes ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM fixes_stage"
    " ON CONFLICT DO NOTHING RETURNING rid"
)


class Committed(msgspec.Struct):
    stored: int = 0
    last_rid: int = 0
    last_event_rid: int = 0
    alerts: list[dict[str, Any]] = msgspec.field(default_factory=list)


async def _store_fixes(conn: Conn, rows: list[tuple]) -> tuple[int, int]:
    """(fixes stored, highest rid)."""
    try:
        async with conn.transaction():  # a savepoint
            status = await conn.copy_records_to_table("fixes", records=rows, columns=_COLUMNS)
    except asyncpg.UniqueViolationError:
        await conn.execute(_STAGE)
        await conn.copy_records_to_table("fixes_stage", records=rows, columns=_COLUMNS)
        rids = await conn.fetch(_MOVE)
        return len(rids), max((r["rid"] for r in rids), default=0)
    # One batch's rids come from this session's calls of the sequence, in order.
    return int(status.split()[-1]), await conn.fetchval("SELECT currval('fixes_rid_seq')")


def _row(j: Judged) -> tuple:
    f = j.fix
    return (
        f.device,
        j.supervisee,
        f.seq,
        f.ts,  # epoch ms: the pool's timestamptz codec takes them as they are
        f.at,
        f.lat,
        f.lon,
        f.acc,
        f.src,
        f.spd,
        f.hdg,
        f.batt,
        f.chg,
        f.strap,
        int(j.flags),
        zone_state(j),
    )


async def commit(
    conn: Conn,
    judged: Sequence[Judged],
    events: Sequence[DeviceEvent],
    owners: dict[str, str],
    rejections: Sequence[Rejection],
    verdicts: list[Verdict],
) -> Committed:
    out = Committed()
    async with conn.transaction():
        if judged:
            out.stored, out.last_rid = await _store_fixes(conn, [_row(j) for j in judged])
        if events:
            out.last_event_rid = (
                await conn.fetchval(
                    "WITH new AS (INSERT INTO device_events"
                    " (device_id, seq, ts, received_at, type, supervisee_id, detail)"
                    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[],"
                    " $4::timestamptz[], $5::text[], $6::text[], $7::jsonb[])"
                    " ON CONFLICT DO NOTHING RETURNING rid) SELECT max(rid) FROM new",
                    [e.device for e in events],
                    [e.seq for e in events],
                    [e.ts for e in events],
                    [e.at for e in events],
                    [e.type for e in events],
                    [owners.get(e.device) for e in events],
                    [e.detail if isinstance(e, DetailedEvent) else None for e in events],
                )
                or 0
            )
        if rejections:
            await conn.execute(
                "INSERT INTO rejected_messages (topic, payload, reason)"
                " SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[])",
                [r.topic for r in rejections],
                [r.payload for r in rejections],
                [f"{r.reason}: {r.detail}" for r in rejections],
            )
        if verdicts:
            out.alerts = await apply(conn, verdicts)
            await pursuit.apply(conn, verdicts)
    return out
