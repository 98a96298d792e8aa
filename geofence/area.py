"""An area ready to judge error circles against, many at a time.

A fix is a circle (its position and accuracy radius), not a point. Against an area it is
one of five things, as a signed class:

    +2  the whole circle is inside          -2  the whole circle is outside
    +1  the centre is inside, circle crosses -1  the centre is outside, circle crosses

Only ±2 is evidence a rule may act on; ±1 says which side the fix leans to.

Areas are worked in a local metric frame (equirectangular about the area's centre: well
under 1% scale error over a county, far below GPS error), so radii are plain metres. Most
fixes lie far from any border, so buffered copies of the area at a few fixed distances
settle them with one prepared point-in-polygon test; only fixes close to the border pay
for an exact distance.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import numpy.typing as npt
import shapely

FloatArray = npt.NDArray[np.float64]
ClassArray = npt.NDArray[np.int8]

_EARTH_M = 6_371_008.8
_M_PER_DEG = _EARTH_M * math.pi / 180.0
# Buffer distances (m) at which pre-computed copies answer most fixes without a distance.
_LEVELS = np.array([25.0, 100.0, 400.0, 1500.0, 5000.0])


class Area:
    """A polygonal area (WGS-84 in, metric inside)."""

    def __init__(self, geometry: shapely.Geometry) -> None:
        centre = geometry.centroid
        self.lat0 = float(centre.y)
        self.lon0 = float(centre.x)
        self.kx = _M_PER_DEG * math.cos(math.radians(self.lat0))
        self.ky = _M_PER_DEG
        self.metric = self.to_metric(geometry)
        shapely.prepare(self.metric)
        self._inner: dict[int, shapely.Geometry] = {}
        self._outer: dict[int, shapely.Geometry] = {}

    @classmethod
    def circle(cls, lat: float, lon: float, radius_m: float) -> Area:
        """A circle of `radius_m` metres, drawn in the metric frame centred on it."""
        area = cls(shapely.Point(lon, lat))
        area.metric = shapely.Point(0.0, 0.0).buffer(radius_m, quad_segs=32)
        shapely.prepare(area.metric)
        return area

    def _to_metric(self, coords: FloatArray) -> FloatArray:
        out = np.empty_like(coords)
        out[:, 0] = (coords[:, 0] - self.lon0) * self.kx
        out[:, 1] = (coords[:, 1] - self.lat0) * self.ky
        return out

    def to_metric(self, geometry: shapely.Geometry) -> shapely.Geometry:
        """Another WGS-84 geometry in this area's metric frame (to measure between them)."""
        return shapely.transform(geometry, self._to_metric)

    def xy(self, lat: FloatArray, lon: FloatArray) -> tuple[FloatArray, FloatArray]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    @cached_property
    def reach(self) -> float:
        """Metres from the frame's origin to the area's farthest vertex: the area lies
        within this circle."""
        coords = shapely.get_coordinates(self.metric)
        return float(np.hypot(coords[:, 0], coords[:, 1]).max()) if len(coords) else 0.0

    def surely_out(self, lat: float, lon: float, radius: float) -> bool:
        """Whether an error circle lies so far from the area that `classify` would surely
        say -2 (its centre farther than the reach plus its radius, with a metre to spare
        for rounding): a quick test for the many fixes nowhere near a small zone."""
        x, y = (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky
        return math.hypot(x, y) > self.reach + radius + 1.0

    @cached_property
    def boundary(self) -> shapely.Geometry:
        b = self.metric.boundary
        shapely.prepare(b)
        return b

    def _buffered(self, level: int, inner: bool) -> shapely.Geometry:
        cache = self._inner if inner else self._outer
        geom = cache.get(level)
        if geom is None:
            distance = float(_LEVELS[level])
            geom = self.metric.buffer(-distance if inner else distance, quad_segs=4)
            shapely.prepare(geom)
            cache[level] = geom
        return geom

    def classify(self, lat: FloatArray, lon: FloatArray, radius: FloatArray) -> ClassArray:
        """Signed class (+2, +1, -1, -2) of each error circle against this area."""
        x, y = self.xy(lat, lon)
        inside = shapely.contains_xy(self.metric, x, y)
        out = np.where(inside, np.int8(1), np.int8(-1)).astype(np.int8)
        level = np.searchsorted(_LEVELS, radius, side="left")
        for lv in np.unique(level[level < len(_LEVELS)]):
            sel = level == lv
            pick_in = np.flatnonzero(sel & inside)
            if pick_in.size:
                sure = shapely.contains_xy(self._buffered(int(lv), True), x[pick_in], y[pick_in])
                out[pick_in[sure]] = 2
            pick_out = np.flatnonzero(sel & ~inside)
            if pick_out.size:
                near = shapely.contains_xy(self._buffered(int(lv), False), x[pick_out], y[pick_out])
                out[pick_out[~near]] = -2
        todo = np.flatnonzero(np.abs(out) == 1)
        if todo.size:
            distance = shapely.distance(self.boundary, shapely.points(x[todo], y[todo]))
            clear = distance >= radius[todo]
            out[todo[clear]] *= 2
        return out

    def depth(self, lat: FloatArray, lon: FloatArray, radius: FloatArray) -> FloatArray:
        """How far each point lies from the border, in units of its radius: the weight of a
        fix's evidence (geofence.confirm). Asked only of the few fixes that violate."""
        x, y = self.xy(lat, lon)
        distance = shapely.distance(self.boundary, shapely.points(x, y))
        return np.asarray(distance / np.maximum(radius, 1.0), dtype=np.float64)

    def signed_distance(self, lat: float, lon: float) -> float:
        """Metres from the border, positive inside: for an alert's detail."""
        x, y = self.xy(np.array([lat]), np.array([lon]))
        point = shapely.Point(float(x[0]), float(y[0]))
        d = float(shapely.distance(self.boundary, point))
        return d if shapely.contains_xy(self.metric, x[0], y[0]) else -d
