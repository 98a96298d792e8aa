"""The bundle's map, drawn as vectors (no tiles, no network): the zones in force, the
track, each fix's accuracy circle, where the person crossed out of the allowed area (the
last fix inside and the first outside) and where the alert was confirmed, with a scale bar.
Worked in geofence.area's local metric frame, so radii and the scale are plain metres."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import shapely
from reportlab.graphics.shapes import (
    FILL_EVEN_ODD,
    Circle,
    Drawing,
    Group,
    Line,
    Path,
    PolyLine,
    Rect,
    String,
)
from reportlab.lib import colors
from shapely.geometry import shape

from alerts.templates import local_time
from evidence.gather import Evidence
from geofence.area import Area

# Fixes drawn one by one (dot and circle); a longer track is thinned for the map only
# (every fix is in the tables and track.csv); the line itself keeps every fix.
MAX_DOTS = 1500
MAX_CROSSINGS = 5
LEGEND_H = 34.0
_MIN_SPAN_M = 400.0


def _style(hex_colour: str, fill_alpha: float, label: str) -> tuple[Any, Any, str]:
    stroke = colors.HexColor(hex_colour)
    return stroke, colors.Color(stroke.red, stroke.green, stroke.blue, alpha=fill_alpha), label


ZONE_STYLE = {  # kind: (stroke, fill, label)
    "jurisdiction": _style("#15803d", 0.08, "执行地"),
    "home": _style("#1d4ed8", 0.12, "居住地"),
    "destination": _style("#b45309", 0.12, "外出目的地"),
    "exclusion": _style("#b91c1c", 0.2, "禁入区域"),
}
STATE_COLOUR = {
    "out": colors.HexColor("#dc2626"),
    "uncertain": colors.HexColor("#d97706"),
    "in": colors.HexColor("#1e3a8a"),
}
ACC_FILL = colors.Color(0.23, 0.51, 0.96, alpha=0.12)
ACC_STROKE = colors.Color(0.23, 0.51, 0.96, alpha=0.45)


def crossings(fixes: Sequence[Any]) -> list[tuple[int, int]]:
    """(last inside, first outside) index pairs along the track, first few only."""
    found: list[tuple[int, int]] = []
    last_in: int | None = None
    for i, fix in enumerate(fixes):
        if fix["zone_state"] == "in":
            last_in = i
        elif fix["zone_state"] == "out" and last_in is not None:
            found.append((last_in, i))
            last_in = None
            if len(found) == MAX_CROSSINGS:
                break
    return found


def draw(evidence: Evidence, width: float, height: float, font: str, timezone: str) -> Drawing:
    drawing = Drawing(width, height + LEGEND_H)
    fixes = evidence.fixes
    zones = [(zone_kind(evidence, z), z) for z in evidence.zones]
    alert_at = _alert_position(evidence)
    seen = [(f["lon"], f["lat"]) for f in fixes] + ([alert_at] if alert_at else [])
    reference = shapely.MultiPoint(seen) if seen else None
    if reference is None and zones:
        reference = shapely.union_all([shape(z["geometry"]) for _, z in zones])
    if reference is None or reference.is_empty:
        drawing.add(Rect(0, LEGEND_H, width, height, fillColor=None, strokeColor=colors.grey))
        drawing.add(
            String(
                width / 2,
                LEGEND_H + height / 2,
                "该时段无定位数据",
                fontName=font,
                fontSize=11,
                textAnchor="middle",
            )
        )
        return drawing
    frame = Area(reference)
    shapes = [(kind, z, _metric(frame, z)) for kind, z in zones]
    lon_lat = np.array(seen, dtype=float).reshape(-1, 2)
    xy = np.column_stack(frame.xy(lon_lat[:, 1], lon_lat[:, 0]))
    box = _extent(xy, [g for kind, _, g in shapes if kind != "jurisdiction"], width / height)
    scale = width / (box[2] - box[0])

    def to_page(x: float, y: float) -> tuple[float, float]:
        return (x - box[0]) * scale, (y - box[1]) * scale + LEGEND_H

    canvas = Group()
    canvas.add(
        Rect(0, LEGEND_H, width, height, fillColor=colors.HexColor("#f8fafc"), strokeColor=None)
    )
    for kind in ("jurisdiction", "home", "destination", "exclusion"):
        stroke, fill, _ = ZONE_STYLE[kind]
        for k, _, geom in shapes:
            if k == kind:
                _polygons(canvas, shapely.clip_by_rect(geom, *box), to_page, stroke, fill, 1.2)
    if fixes:
        n = len(fixes)
        pts = xy[:n]
        marks = crossings(fixes)
        step = max(1, math.ceil(n / MAX_DOTS))
        shown = sorted(set(range(0, n, step)) | {i for pair in marks for i in pair})
        acc = np.array([min(fixes[i]["acc"] or 0.0, 5 * (box[2] - box[0])) for i in shown])
        for i, a in zip(shown, acc, strict=True):
            x, y = pts[i]
            if a <= 0:
                continue
            if box[0] <= x - a and x + a <= box[2] and box[1] <= y - a and y + a <= box[3]:
                px, py = to_page(x, y)
                canvas.add(
                    Circle(
                        px,
                        py,
                        a * scale,
                        fillColor=ACC_FILL,
                        strokeColor=ACC_STROKE,
                        strokeWidth=0.3,
                    )
                )
            else:  # crosses the frame's edge: clipped to it
                circle = shapely.Point(x, y).buffer(a, quad_segs=12)
                _polygons(
                    canvas, shapely.clip_by_rect(circle, *box), to_page, ACC_STROKE, ACC_FILL, 0.3
                )
        line = shapely.LineString(pts) if n > 1 else None
        if line is not None:
            line = shapely.clip_by_rect(line.simplify(0.3 / scale), *box)
            for part in _parts(line):
                flat = [c for x, y in part.coords for c in to_page(x, y)]
                canvas.add(PolyLine(flat, strokeColor=colors.HexColor("#475569"), strokeWidth=0.8))
        for i in shown:
            x, y = pts[i]
            if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                px, py = to_page(x, y)
                colour = STATE_COLOUR.get(fixes[i]["zone_state"], colors.grey)
                canvas.add(Circle(px, py, 1.6, fillColor=colour, strokeColor=None))
        for inside, outside in marks:
            for i, colour, label in (
                (inside, colors.HexColor("#15803d"), "最后区域内"),
                (outside, colors.HexColor("#dc2626"), "首个区域外"),
            ):
                px, py = to_page(*pts[i])
                canvas.add(Circle(px, py, 4.5, fillColor=None, strokeColor=colour, strokeWidth=1.5))
                canvas.add(
                    String(
                        px + 6,
                        py + 3,
                        f"{label} {local_time(fixes[i]['ts'], timezone)[11:]}",
                        fontName=font,
                        fontSize=7,
                        fillColor=colour,
                    )
                )
    if alert_at:
        px, py = to_page(*xy[-1])
        red = colors.HexColor("#7f1d1d")
        canvas.add(Line(px - 5, py - 5, px + 5, py + 5, strokeColor=red, strokeWidth=1.5))
        canvas.add(Line(px - 5, py + 5, px + 5, py - 5, strokeColor=red, strokeWidth=1.5))
        canvas.add(String(px + 6, py - 9, "告警确认位置", fontName=font, fontSize=7, fillColor=red))
    _scale_bar(canvas, scale, width, font)
    canvas.add(
        String(
            width - 12, LEGEND_H + height - 16, "北", fontName=font, fontSize=9, textAnchor="middle"
        )
    )
    canvas.add(
        Line(width - 12, LEGEND_H + height - 36, width - 12, LEGEND_H + height - 19, strokeWidth=1)
    )
    canvas.add(Rect(0, LEGEND_H, width, height, fillColor=None, strokeColor=colors.grey))
    drawing.add(canvas)
    _legend(drawing, font)
    return drawing


def zone_kind(evidence: Evidence, zone: Any) -> str:
    person = evidence.person
    if zone["id"] in person["exclusion"]:
        return "exclusion"
    if zone["id"] == person["home"]:
        return "home"
    if zone["id"] in person["jurisdiction"]:
        return "jurisdiction"
    return "destination"


def _alert_position(evidence: Evidence) -> tuple[float, float] | None:
    if evidence.scope.alert is None or not evidence.alerts:
        return None
    detail = evidence.alerts[0]["detail"] or {}
    lat, lon = detail.get("lat"), detail.get("lon")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        return float(lon), float(lat)
    return None


def _metric(frame: Area, zone: Any) -> shapely.Geometry:
    geom = frame.to_metric(shape(zone["geometry"]))
    if zone["radius"] is not None:
        geom = geom.buffer(float(zone["radius"]), quad_segs=32)
    return geom


def _extent(
    xy: np.ndarray, near: list[shapely.Geometry], aspect: float
) -> tuple[float, float, float, float]:
    """The track (and the alert's position) with the small zones near it, padded, at the
    drawing's aspect ratio; a jurisdiction is drawn only where it falls in this frame."""
    if len(xy):
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        here = shapely.box(x0, y0, x1, y1)
        for geom in near:
            if geom.distance(here) < 5000:
                gx0, gy0, gx1, gy1 = geom.bounds
                x0, y0, x1, y1 = min(x0, gx0), min(y0, gy0), max(x1, gx1), max(y1, gy1)
    else:
        x0, y0, x1, y1 = shapely.union_all(near).bounds if near else (-1.0, -1.0, 1.0, 1.0)
    w = max(x1 - x0, _MIN_SPAN_M) * 1.15
    h = max(y1 - y0, _MIN_SPAN_M) * 1.15
    w, h = max(w, h * aspect), max(h, w / aspect)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _parts(geom: shapely.Geometry) -> Iterable[shapely.Geometry]:
    return [g for g in getattr(geom, "geoms", [geom]) if not g.is_empty]


def _polygons(
    group: Group, geom: shapely.Geometry, to_page: Any, stroke: Any, fill: Any, width: float
) -> None:
    for part in _parts(geom):
        if not isinstance(part, shapely.Polygon):
            continue
        path = Path(fillColor=fill, strokeColor=stroke, strokeWidth=width, fillMode=FILL_EVEN_ODD)
        for ring in [part.exterior, *part.interiors]:
            coords = [to_page(x, y) for x, y in ring.coords]
            path.moveTo(*coords[0])
            for c in coords[1:]:
                path.lineTo(*c)
            path.closePath()
        group.add(path)


def _scale_bar(group: Group, scale: float, width: float, font: str) -> None:
    target = width / 5 / scale  # about a fifth of the map, in metres
    magnitude = 10 ** math.floor(math.log10(target))
    metres = max(m * magnitude for m in (1, 2, 5) if m * magnitude <= target)
    length = metres * scale
    y = LEGEND_H + 10
    group.add(Line(10, y, 10 + length, y, strokeWidth=2))
    label = f"{metres / 1000:g} 千米" if metres >= 1000 else f"{metres:g} 米"
    group.add(String(10 + length / 2, y + 4, label, fontName=font, fontSize=7, textAnchor="middle"))


def _legend(drawing: Drawing, font: str) -> None:
    x, y = 0.0, LEGEND_H - 12
    items: list[tuple[Any, Any, str]] = [(s, f, label) for s, f, label in ZONE_STYLE.values()]
    items += [(ACC_STROKE, ACC_FILL, "定位精度半径")]
    for stroke, fill, label in items:
        drawing.add(Rect(x, y - 2, 10, 8, fillColor=fill, strokeColor=stroke, strokeWidth=0.8))
        drawing.add(String(x + 13, y, label, fontName=font, fontSize=7))
        x += 78
    x, y = 0.0, LEGEND_H - 26
    for state, label in (
        ("in", "区域内定位点"),
        ("uncertain", "精度不足无法判定"),
        ("out", "区域外定位点"),
    ):
        drawing.add(Circle(x + 5, y + 2, 2, fillColor=STATE_COLOUR[state], strokeColor=None))
        drawing.add(String(x + 13, y, label, fontName=font, fontSize=7))
        x += 96
