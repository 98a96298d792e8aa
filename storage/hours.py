"""The device-hours of `fixes_hours` (migration 0027, packed by storage.compaction), in
SQL: how fixes are grouped into one, and the rows of `fixes` and the packed fixes read as
one relation. No I/O here: ingest and the alerts import it without the archive's
libraries."""

from __future__ import annotations

# The per-fix columns of a device-hour, one array each.
ARRAYS = (
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
FIELDS = ", ".join(ARRAYS)


def regroup(rows: str, hour: str) -> str:
    """INSERT INTO fixes_hours of the fixes of `rows` (a relation with device_id and
    ARRAYS's columns, holding each fix of the device-hours it covers once), grouped by
    device and the hour the SQL expression `hour` gives, in place of those already there."""
    aggregates = ", ".join(f"array_agg({c} ORDER BY ts, seq)" for c in ARRAYS)
    return (
        f"INSERT INTO fixes_hours (device_id, hour, {FIELDS})"
        f" SELECT device_id, {hour}, {aggregates} FROM {rows} GROUP BY 1, 2"
        " ON CONFLICT (device_id, hour) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in ARRAYS)
    )


def union(where: str = "true", lo: str = "'-infinity'", hi: str = "'infinity'") -> str:
    """The fixes of `fixes` and of the packed device-hours overlapping [lo, hi) (SQL
    expressions) that match `where` (on the columns of `fixes`; a device_id condition
    reaches each one's key), as one SELECT of device_id and ARRAYS's columns: only the
    hours asked for are read and decompressed."""
    return (
        f"SELECT device_id, {FIELDS} FROM fixes WHERE {where} UNION ALL"
        f" SELECT device_id, {FIELDS} FROM fixes_packed WHERE {where}"
        f" AND hour > ({lo})::timestamptz - interval '1 hour' AND hour < ({hi})::timestamptz"
    )


def hot_fixes(where: str = "true", lo: str = "'-infinity'", hi: str = "'infinity'") -> str:
    """union(where, lo, hi) as a relation to select from."""
    return f"({union(where, lo, hi)})"


def newest(device: str, supervisee: str, upto: str = "'infinity'") -> str:
    """The newest fix with a position of `device` while `supervisee` wore it, taken at or
    before `upto` (SQL expressions), as a relation of one row at most (device_id, ts, lat,
    lon, acc, batt, zone_state): the newest row, and the newest packed one, found by
    reading the device's hours newest first."""
    columns = "device_id, ts, lat, lon, acc, batt, zone_state"
    where = (
        f"device_id = {device} AND supervisee_id = {supervisee} AND lat IS NOT NULL"
        f" AND ts <= {upto}"
    )
    return (
        f"(SELECT * FROM ((SELECT {columns} FROM fixes WHERE {where} ORDER BY ts DESC LIMIT 1)"
        f" UNION ALL (SELECT {columns} FROM fixes_packed WHERE {where} AND hour <= {upto}"
        " ORDER BY hour DESC, ts DESC LIMIT 1)) w ORDER BY ts DESC LIMIT 1)"
    )
