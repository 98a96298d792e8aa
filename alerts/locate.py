"""Locate now (立即定位, docs/rules.md "Locate now"): ask every device a person wears for
an immediate fix, and keep the request and each device's answer in the case record.

`request` asks, in the caller's transaction: a tag gets the downlink command `locate`, an
OwnTracks phone `reportLocation`; a phone on HTTP (OsmAnd, Traccar Client) has no downlink
and is not asked — its next report is still taken as its answer, and the request says so.

A device's answer is its next fix: the newest fix with a position in the first batch
committed after the request whose fix time is not older than the request by more than
ANSWER_SLACK (a phone may hand back the location it took a moment before; a buffered
upload of old fixes is no answer). Ingest writes it in the transaction that commits the
fix (`record_answers`), with a 'located' step in the alert's timeline when the request
came from an alert. A request unanswered ANSWER_WINDOW after it was made stays
unanswered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from alerts.downlink import queue_command, queue_owntracks_command
from alerts.record import append_event
from fencewatch.timefmt import iso_time
from geofence.judge import Judged
from storage.db import Conn, Row

ANSWER_SLACK = timedelta(seconds=60)
ANSWER_WINDOW = timedelta(hours=1)

# How each kind of device is asked; None: it cannot be.
TAG, OWNTRACKS, NO_DOWNLINK = "downlink", "owntracks", None

_DEVICES = (
    "SELECT d.id, d.kind, d.owntracks, d.osmand FROM device_assignments a"
    " JOIN devices d ON d.id = a.device_id"
    " WHERE a.supervisee_id = $1 AND a.until IS NULL ORDER BY d.id"
)
_ANSWER = """
    WITH f (device_id, ts, lat, lon, acc) AS (
        SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[],
                             $5::real[]))
    UPDATE locate_devices l
    SET answered_at = now(), fix_ts = f.ts, lat = f.lat, lon = f.lon, acc = f.acc
    FROM f, locate_requests r
    WHERE l.answered_at IS NULL AND l.device_id = f.device_id AND r.id = l.request_id
      AND r.requested_at > now() - $6::interval AND f.ts >= r.requested_at - $7::interval
    RETURNING l.request_id, l.device_id, r.alert_id, f.ts, f.lat, f.lon, f.acc
"""


def channel(device: Row) -> str | None:
    """How `device` (a `devices` row) is asked for a fix."""
    if device["kind"] == "tag":
        return TAG
    if device["owntracks"] is not None:
        return OWNTRACKS
    return NO_DOWNLINK


async def request(
    conn: Conn, supervisee: str, *, issued_by: str, alert_id: int | None = None
) -> int | None:
    """Ask every device `supervisee` wears for a fix now, in the caller's transaction; the
    request's id, or None when they wear no device."""
    devices = await conn.fetch(_DEVICES, supervisee)
    if not devices:
        return None
    request_id: int = await conn.fetchval(
        "INSERT INTO locate_requests (supervisee_id, alert_id, requested_by)"
        " VALUES ($1, $2, $3) RETURNING id",
        supervisee,
        alert_id,
        issued_by,
    )
    asked = []
    for d in devices:
        how = channel(d)
        command: str | None = None
        if how == TAG:
            wire = await queue_command(
                conn,
                d["id"],
                "locate",
                issued_by=issued_by,
                alert_id=alert_id,
                supervisee=supervisee,
            )
            command = wire["id"]
        elif how == OWNTRACKS:
            command = await queue_owntracks_command(
                conn,
                d["id"],
                d["owntracks"],
                "report_location",
                issued_by=issued_by,
                supervisee=supervisee,
                alert_id=alert_id,
            )
        await conn.execute(
            "INSERT INTO locate_devices (request_id, device_id, command) VALUES ($1, $2, $3::uuid)",
            request_id,
            d["id"],
            command,
        )
        asked.append({"device": d["id"], "asked": how is not None})
    if alert_id is not None:
        await append_event(
            conn, alert_id, issued_by, "locate", {"request": request_id, "devices": asked}
        )
    return request_id


async def record_answers(conn: Conn, judged: Sequence[Judged]) -> int:
    """Take the fixes of a batch being committed as answers to pending requests, inside
    the committing transaction; how many requests' devices it answered."""
    newest: dict[str, Any] = {}
    for j in judged:
        f = j.fix
        if f.lat is not None and f.lon is not None:
            held = newest.get(f.device)
            if held is None or f.ts > held.ts:
                newest[f.device] = f
    if not newest:
        return 0
    fixes = list(newest.values())
    rows = await conn.fetch(
        _ANSWER,
        [f.device for f in fixes],
        [f.ts for f in fixes],
        [f.lat for f in fixes],
        [f.lon for f in fixes],
        [f.acc for f in fixes],
        ANSWER_WINDOW,
        ANSWER_SLACK,
    )
    for r in rows:
        if r["alert_id"] is not None:
            await append_event(
                conn,
                r["alert_id"],
                f"device:{r['device_id']}",
                "located",
                {
                    "request": r["request_id"],
                    "device": r["device_id"],
                    "ts": iso_time(r["ts"]),
                    "lat": r["lat"],
                    "lon": r["lon"],
                    "acc": r["acc"],
                },
            )
    return len(rows)
