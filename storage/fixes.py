"""The `fixes` table and the engine's `Fix`, both ways: a judged fix as the row ingest
commits (ingest.writer), and a committed row as the `Fix` judged again after a restart
(ingest.restore), with the device events committed alongside.

Fixes are COPYed straight into `fixes`; only when that meets a fix already stored (a QoS 1
redelivered) is the batch committed again, staged and inserted-if-new, so each fix is stored
once and the common case costs the database a third less. A fix received more than LATE_MS
after it was taken may belong to an hour already packed (storage.compaction), which the key
of `fixes` does not cover: those few are looked for in their device-hours once stored, and
taken out again if found there. Looking after the insert, not before, leaves no gap for a
packing committing meanwhile: an insert meeting a row being packed waits for it, and the
look that follows sees the hour it packed."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from fencewatch.timefmt import epoch_ms
from geofence.engine import zone_state
from geofence.judge import Judged
from geofence.model import DeviceEvent, Fix, Quality
from storage.db import Conn
from storage.hours import ARRAYS

# The columns of `fixes`: a device-hour packs the same ones, an array each.
COLUMNS = ("device_id", *ARRAYS)
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS fixes_stage ON COMMIT DELETE ROWS AS SELECT "
    + ", ".join(COLUMNS)
    + " FROM fixes WITH NO DATA"
)
LATE_MS = 30 * 60 * 1000  # at most compaction.AFTER: every fix of a packed hour is looked for
_REFUSE_PACKED = (
    "DELETE FROM fixes f USING unnest($1::text[], $2::timestamptz[], $3::bigint[])"
    " AS l (device_id, ts, seq) WHERE f.device_id = l.device_id AND f.ts = l.ts"
    " AND f.seq = l.seq AND EXISTS (SELECT FROM fixes_packed p"
    "  WHERE p.device_id = l.device_id AND p.hour = date_trunc('hour', l.ts, 'UTC')"
    "  AND p.ts = l.ts AND p.seq = l.seq)"
)
_MOVE = (
    f"INSERT INTO fixes ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM fixes_stage"
    " ON CONFLICT DO NOTHING RETURNING rid"
)


def _row(j: Judged) -> tuple:
    """A judged fix as its row, in the order of COLUMNS."""
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


def _fix(r: asyncpg.Record) -> Fix:
    """A committed row as the fix the device sent (its judgement is not part of it)."""
    return Fix(
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


async def store(
    conn: Conn, judged: Sequence[Judged], *, redelivered: bool = False
) -> tuple[int, int]:
    """(fixes stored, highest rid), inside the caller's transaction. COPY fails on a fix
    already stored, with asyncpg.UniqueViolationError, and takes the caller's transaction
    with it (no savepoint around it: two round trips a batch saved); the caller then
    stores the batch again `redelivered`, staged and inserted if new."""
    rows = [_row(j) for j in judged]
    if redelivered:
        await conn.execute(_STAGE)
        await conn.copy_records_to_table("fixes_stage", records=rows, columns=COLUMNS)
        rids = await conn.fetch(_MOVE)
        stored, last = len(rids), max((r["rid"] for r in rids), default=0)
    else:
        status = await conn.copy_records_to_table("fixes", records=rows, columns=COLUMNS)
        # One batch's rids come from this session's calls of the sequence, in order.
        stored = int(status.split()[-1])
        last = await conn.fetchval("SELECT currval('fixes_rid_seq')")
    late = [j.fix for j in judged if j.fix.at - j.fix.ts > LATE_MS]
    if late:
        status = await conn.execute(
            _REFUSE_PACKED, [f.device for f in late], [f.ts for f in late], [f.seq for f in late]
        )
        stored -= int(status.split()[-1])
    return stored, last


async def committed_fixes(conn: Conn, after: int, limit: int) -> tuple[list[Fix], int]:
    """Up to `limit` fixes committed after rid `after`, in commit order, and the rid of the
    last of them (`after` when there are none)."""
    rows = await conn.fetch(
        "SELECT rid, device_id, seq, ts, received_at, lat, lon, acc, src, spd, hdg, batt,"
        " chg, strap, quality FROM fixes WHERE rid > $1 ORDER BY rid LIMIT $2",
        after,
        limit,
    )
    return [_fix(r) for r in rows], rows[-1]["rid"] if rows else after


async def committed_events(conn: Conn, after: int) -> tuple[list[DeviceEvent], int]:
    """The device events committed after rid `after`, in commit order, and the rid of the
    last of them (`after` when there are none)."""
    rows = await conn.fetch(
        "SELECT rid, device_id, seq, ts, received_at, type FROM device_events WHERE rid > $1"
        " ORDER BY rid",
        after,
    )
    events = [
        DeviceEvent(
            r["device_id"], r["seq"], epoch_ms(r["ts"]), epoch_ms(r["received_at"]), r["type"]
        )
        for r in rows
    ]
    return events, rows[-1]["rid"] if rows else after
