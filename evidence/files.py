"""The machine-readable files of a bundle: the fixes (track.csv, track.geojson, as the
track endpoint gives them), the zones in force (zones.geojson), the alerts with their
steps and dispositions (timeline.csv, timeline.json) and the rules in force (rules.json).
Times are ISO-8601 UTC."""

from __future__ import annotations

import csv
import io
from typing import Any

import msgspec

from api.routes.track import track_features
from evidence.gather import Evidence
from fencewatch.timefmt import iso_time
from geofence.model import Quality

TRACK_COLUMNS = (
    "ts", "lat", "lon", "acc_m", "device", "seq", "src", "batt", "quality", "zone_state"
)  # fmt: skip
TIMELINE_COLUMNS = (
    "alert", "type", "severity", "at", "actor", "action", "disposition", "note", "detail"
)  # fmt: skip


def render(evidence: Evidence) -> dict[str, bytes]:
    return {
        "track.csv": _track_csv(evidence),
        "track.geojson": _json(
            {"type": "FeatureCollection", "features": track_features(evidence.fixes)}
        ),
        "zones.geojson": _json(zones_collection(evidence)),
        "timeline.csv": _timeline_csv(evidence),
        "timeline.json": _json(evidence.alerts),
        "rules.json": _json(rules(evidence)),
    }


def zones_collection(evidence: Evidence) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": z["geometry"],
                "properties": {
                    "id": z["id"],
                    "kind": z["kind"],
                    "name": z["name"],
                    "radius": z["radius"],
                    "schedule": z["schedule"],
                    "crs": z["crs"],
                },
            }
            for z in evidence.zones
        ],
    }


def rules(evidence: Evidence) -> dict[str, Any]:
    """The rules the person was held to over the range, as recorded at export: their
    zones and level, with every recorded change to them since the range began (so the
    rules of any moment can be read back), and the leave, monitoring orders and heightened
    periods that meet the range."""
    person = evidence.person
    return {
        "supervisee": {
            k: person[k]
            for k in ("id", "name", "office", "officer", "level", "term_start", "term_end")
        },
        "jurisdiction": list(person["jurisdiction"]),
        "exclusion": list(person["exclusion"]),
        "home": person["home"],
        "zones": [
            {k: z[k] for k in ("id", "kind", "name", "radius", "schedule")} for z in evidence.zones
        ],
        "leaves": [dict(r) for r in evidence.leaves],
        "monitoring_orders": [dict(r) for r in evidence.orders],
        "heightened_periods": [dict(r) for r in evidence.heightened],
        "changes_since_start": [
            {k: r[k] for k in ("at", "actor", "role", "action", "object", "detail")}
            for r in evidence.rule_changes
        ],
    }


def _json(value: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def _csv(header: tuple[str, ...], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _track_csv(evidence: Evidence) -> bytes:
    return _csv(
        TRACK_COLUMNS,
        [
            [
                iso_time(r["ts"]),
                r["lat"],
                r["lon"],
                "" if r["acc"] is None else r["acc"],
                r["device"],
                r["seq"],
                r["src"] or "",
                "" if r["batt"] is None else r["batt"],
                " ".join(Quality.names(r["quality"])),
                r["zone_state"] or "",
            ]
            for r in evidence.fixes
        ],
    )


def _timeline_csv(evidence: Evidence) -> bytes:
    rows = []
    for alert in evidence.alerts:
        for step in alert["timeline"]:
            detail = step["detail"] or {}
            rows.append(
                [
                    alert["id"],
                    alert["type"],
                    alert["severity"],
                    iso_time(step["at"]),
                    step["actor"],
                    step["action"],
                    detail.get("disposition", ""),
                    detail.get("note", ""),
                    msgspec.json.encode(detail).decode(),
                ]
            )
    return _csv(TIMELINE_COLUMNS, rows)
