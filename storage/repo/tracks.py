"""Location data: everyone's latest position (a person's track: storage.history)."""

from __future__ import annotations

from collections.abc import Sequence

from geofence.model import GEOFENCE_RULES, MAP_STATES
from storage import hours
from storage.db import Conn, Row


async def latest_positions(conn: Conn, supervisees: Sequence[str]) -> list[Row]:
    """Each person's newest fix with a position (an index probe or two per device they
    wore: its rows, and its packed hours newest first),
    with the map state the live feed (alerts.feed) would give it: a geofence alert whose
    condition still holds is a breach, otherwise the fix's zone state in the feed's words."""
    return await conn.fetch(
        "SELECT p.id AS supervisee, f.device_id AS device, f.ts, f.lat, f.lon, f.acc, f.batt,"
        " CASE WHEN EXISTS (SELECT FROM alerts a WHERE a.supervisee_id = p.id AND a.active"
        "   AND a.type = ANY($2::text[])) THEN 'breach'"
        "  ELSE COALESCE($3::jsonb ->> f.zone_state, 'unknown') END AS state"
        " FROM unnest($1::text[]) AS p(id) CROSS JOIN LATERAL"
        " (SELECT w.* FROM device_assignments a CROSS JOIN LATERAL"
        f"  {hours.newest('a.device_id', 'p.id')} w"
        "  WHERE a.supervisee_id = p.id ORDER BY w.ts DESC LIMIT 1) f"
        " ORDER BY p.id",
        list(supervisees),
        list(GEOFENCE_RULES),
        MAP_STATES,
    )
