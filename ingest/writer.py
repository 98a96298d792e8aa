"""Commit one judged batch in one transaction: fixes, the answers they give to locate-now
requests (alerts.locate), device events, rejected messages, the alerts the batch raised
and the pursuit commands it calls for (alerts.pursuit). The broker is acknowledged only
after this returns. Fixes are stored as storage.fixes writes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from alerts import locate, pursuit
from alerts.record import apply
from geofence.judge import Judged
from geofence.model import DeviceEvent, Verdict
from ingest.decode import DetailedEvent, Rejection
from storage import fixes
from storage.db import Conn


class Committed(msgspec.Struct):
    stored: int = 0
    last_rid: int = 0
    last_event_rid: int = 0
    alerts: list[dict[str, Any]] = msgspec.field(default_factory=list)


async def commit(
    conn: Conn,
    judged: Sequence[Judged],
    events: Sequence[DeviceEvent],
    owners: dict[str, str],
    rejections: Sequence[Rejection],
    verdicts: list[Verdict],
) -> Committed:
    try:
        return await _commit(conn, judged, events, owners, rejections, verdicts, False)
    except asyncpg.UniqueViolationError:
        # A QoS 1 redelivery of a fix already stored (storage.fixes.store): rare, and
        # the whole batch is committed again rather than every batch paying a savepoint.
        return await _commit(conn, judged, events, owners, rejections, verdicts, True)


async def _commit(
    conn: Conn,
    judged: Sequence[Judged],
    events: Sequence[DeviceEvent],
    owners: dict[str, str],
    rejections: Sequence[Rejection],
    verdicts: list[Verdict],
    redelivered: bool,
) -> Committed:
    out = Committed()
    async with conn.transaction():
        if judged:
            out.stored, out.last_rid = await fixes.store(conn, judged, redelivered=redelivered)
            await locate.record_answers(conn, judged)
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
