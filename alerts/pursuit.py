"""Pursuit: while a breach is pending or open the device is asked to report faster, and it is
put back to its normal reporting once the breach is over (docs/rules.md, "Pursuit").

The engine says when — `Verdict`s with action "pursue" (detail: `interval_s`) and "relax",
keyed `pursuit:<device>`; they are not alerts. This module says how, in the transaction
that commits the batch (`apply`):

- a tag gets `set_interval` to the pursuit interval, and later back to its normal
  `devices.report_interval_s`;
- an OwnTracks phone gets `reportLocation` (a fix now) and move mode (`monitoring` 2,
  a fix every interval), and later significant-change mode (1) again.

Storm control: one `device_pursuits` row per pursued device, from the first "pursue" until
the device is restored. Commands go out only when the row is created, so a repeated
"pursue" (another rule, a restart re-judging fixes) sends nothing. "relax" only marks the
row; the escalator's loop restores the device once it has stayed relaxed for
FENCEWATCH_PURSUIT_HOLD_S (`restore_due`), and a "pursue" in the meantime takes the mark
away. A device flapping between pending and clear therefore stays on fast reporting, and
gets one pursuit and one restore per spell rather than a pair per flap.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import asyncpg

from alerts.downlink import MOVE, SIGNIFICANT, queue_command, queue_owntracks_command
from alerts.record import NOTIFY_CHANNEL
from fencewatch.timefmt import utc
from geofence.model import Verdict
from storage.db import Conn

log = logging.getLogger(__name__)

ISSUED_BY = "pursuit"

_PURSUE = (
    "INSERT INTO device_pursuits (device_id, supervisee_id, interval_s, since_ts)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (device_id) DO UPDATE SET relaxed_at = NULL"
    " RETURNING xmax = 0 AS created"
)
_DUE = """
    DELETE FROM device_pursuits WHERE device_id IN (
        SELECT device_id FROM device_pursuits WHERE relaxed_at <= $1
        ORDER BY relaxed_at LIMIT 500 FOR UPDATE SKIP LOCKED)
    RETURNING device_id, supervisee_id
"""


async def _device(conn: Conn, device: str) -> asyncpg.Record | None:
    """The device, if it takes commands: a tag, or an OwnTracks phone (a phone on HTTP —
    Traccar Client — has no downlink)."""
    row = await conn.fetchrow(
        "SELECT kind, owntracks, report_interval_s FROM devices WHERE id = $1", device
    )
    if row is None:
        log.warning("pursuit: device %r is not registered; no command sent", device)
    elif row["kind"] == "tag" or row["owntracks"] is not None:
        return row
    return None


async def _pursue(conn: Conn, v: Verdict) -> None:
    device = await _device(conn, v.device)
    interval = int(v.detail["interval_s"])
    if device is None or (device["owntracks"] is None and device["report_interval_s"] <= interval):
        return  # takes no commands, or a tag already reporting at least this often
    if not await conn.fetchval(_PURSUE, v.device, v.supervisee, interval, utc(v.ts)):
        return  # already pursued
    if device["owntracks"] is None:
        await queue_command(
            conn,
            v.device,
            "set_interval",
            issued_by=ISSUED_BY,
            interval_s=interval,
            supervisee=v.supervisee,
        )
        return
    for command, mode in (("report_location", None), ("set_monitoring", MOVE)):
        await queue_owntracks_command(
            conn,
            v.device,
            device["owntracks"],
            command,
            issued_by=ISSUED_BY,
            monitoring=mode,
            interval_s=interval if mode else None,
            supervisee=v.supervisee,
        )


async def _restore(conn: Conn, device_id: str, supervisee: str) -> None:
    device = await _device(conn, device_id)
    if device is None:
        return
    if device["owntracks"] is None:
        await queue_command(
            conn,
            device_id,
            "set_interval",
            issued_by=ISSUED_BY,
            interval_s=device["report_interval_s"],
            supervisee=supervisee,
        )
    else:
        await queue_owntracks_command(
            conn,
            device_id,
            device["owntracks"],
            "set_monitoring",
            issued_by=ISSUED_BY,
            monitoring=SIGNIFICANT,
            supervisee=supervisee,
        )


async def apply(conn: Conn, verdicts: list[Verdict]) -> None:
    """Act on the pursuit verdicts among `verdicts`, inside the caller's transaction."""
    relaxed = False
    for v in verdicts:
        if v.action == "pursue":
            await _pursue(conn, v)
        elif v.action == "relax":
            relaxed |= (
                await conn.execute(
                    "UPDATE device_pursuits SET relaxed_at = now()"
                    " WHERE device_id = $1 AND relaxed_at IS NULL",
                    v.device,
                )
                == "UPDATE 1"
            )
    if relaxed:
        # Wakes the escalator's loop at commit: with no hold left, the restore goes at once.
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


async def restore_due(pool: asyncpg.Pool, *, now: datetime, hold: timedelta) -> int:
    """Restore every device relaxed at least `hold` before `now`; how many were."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_DUE, now - hold)
        for r in rows:
            await _restore(conn, r["device_id"], r["supervisee_id"])
    return len(rows)
