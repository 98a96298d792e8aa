"""`fencewatch replay` (spec 4.2) as an integrator runs it: a scenario directory built from
the real DataV boundaries, the command, and exactly the alerts it should print."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from geofence.crs import wgs84_to_gcj02
from tests.kit import (
    LIANDU,
    LIANDU_SEAT,
    T0,
    border_crossing,
    line,
    lishui_collection,
    offset,
    qingtian_point,
)


def _drifting(home: tuple[float, float], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    e = nn = 0.0
    out = []
    for i in range(n):
        e, nn = 0.85 * e + rng.gauss(0, 12), 0.85 * nn + rng.gauss(0, 12)
        lat, lon = offset(home, e, nn)
        out.append({"seq": i + 1, "ts": T0 + i * 30_000, "lat": lat, "lon": lon, "acc": 35.0})
    return out


def build(directory: Path) -> None:
    zones = lishui_collection()
    # A court's exclusion zone drawn on a Chinese web map: its coordinates are GCJ-02.
    bar = offset(LIANDU_SEAT, 3000, 1500)
    glat, glon = wgs84_to_gcj02(bar[0], bar[1])
    glat, glon = float(glat), float(glon)
    d = 0.0015
    ring = [[glon - d, glat - d], [glon + d, glat - d], [glon + d, glat + d], [glon - d, glat + d]]
    zones = {
        "type": "FeatureCollection",
        "features": [
            *zones["features"],
            {
                "type": "Feature",
                "properties": {"id": "bar", "kind": "exclusion", "crs": "gcj02", "name": "酒吧"},
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
            },
        ],
    }
    target = qingtian_point()
    border = border_crossing(LIANDU_SEAT, target, LIANDU)
    near_border = offset(border, -80, 60)
    misread = (glat, glon)  # where the zone would be if its GCJ-02 were taken as WGS-84
    tracks = {
        "T1": _drifting(near_border, 60, 1),  # lives by the border, indoor drift: no alert
        "T2": line(LIANDU_SEAT, border, 30)
        + line(border, target, 200, t0=T0 + 30 * 30_000, seq0=31)[:30],
        "T3": line(LIANDU_SEAT, bar, 40) + line(bar, bar, 20, t0=T0 + 40 * 30_000, seq0=41),
        "T4": line(LIANDU_SEAT, misread, 40)
        + line(misread, misread, 20, t0=T0 + 40 * 30_000, seq0=41),
    }
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {
                "id": f"S{n}",
                "jurisdiction": [LIANDU],
                "exclusion": ["bar"],
                "home": None,
                "devices": [device],
                "leaves": [],
            }
            for n, device in enumerate(tracks, 1)
        ],
    }
    pings = [
        {"at": f["ts"] + 800, "topic": f"em/{device}/loc", "payload": {"v": 1, **f}}
        for device, fixes in tracks.items()
        for f in fixes
    ]
    pings.sort(key=lambda p: p["at"])
    (directory / "zones.geojson").write_text(json.dumps(zones, ensure_ascii=False))
    (directory / "roster.json").write_text(json.dumps(roster))
    (directory / "pings.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pings))


def replay(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fencewatch.cli", "replay", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_replay_prints_exactly_the_real_breaches(tmp_path: Path) -> None:
    build(tmp_path)
    result = replay(tmp_path)
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((a["type"], a["supervisee"], a["device"]) for a in alerts) == [
        ("exclusion_enter", "S3", "T3"),
        ("jurisdiction_exit", "S2", "T2"),
    ]
    for a in alerts:
        assert a["ts"].endswith("Z") and a["late"] is False


def test_replay_explains_a_broken_scenario(tmp_path: Path) -> None:
    build(tmp_path)
    (tmp_path / "roster.json").write_text(
        '{"supervisees": [{"id": "S1", "leaves": [{"from": 1}]}]}'
    )
    result = replay(tmp_path)
    assert result.returncode == 2
    assert "leave 0 from must be an ISO-8601 time" in result.stderr
