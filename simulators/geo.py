"""Metres ⇄ degrees near a point, on the WGS-84 ellipsoid.

Simulated errors are drawn in metres (east, north) and must land on the map at the right
distance: a degree of longitude near 丽水 (28.4°N) is ~98 km, not 111 km, so a spherical
or latitude-blind conversion would stretch every east-west error by 13%.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely

FloatArray = npt.NDArray[np.float64]


def metres_per_degree(lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(metres per degree of latitude, metres per degree of longitude) at `lat`."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    m_lat = (
        111132.92 - 559.82 * np.cos(2 * phi) + 1.175 * np.cos(4 * phi) - 0.0023 * np.cos(6 * phi)
    )
    m_lon = 111412.84 * np.cos(phi) - 93.5 * np.cos(3 * phi) + 0.118 * np.cos(5 * phi)
    return m_lat, m_lon


def offset(
    lat: npt.ArrayLike, lon: npt.ArrayLike, east_m: npt.ArrayLike, north_m: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """The point `east_m`, `north_m` metres from (`lat`, `lon`)."""
    la = np.asarray(lat, dtype=np.float64)
    m_lat, m_lon = metres_per_degree(la)
    return la + np.asarray(north_m) / m_lat, np.asarray(lon, dtype=np.float64) + np.asarray(
        east_m
    ) / m_lon


def displacement(
    lat0: npt.ArrayLike, lon0: npt.ArrayLike, lat: npt.ArrayLike, lon: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """(east, north) metres from (`lat0`, `lon0`) to (`lat`, `lon`); for short distances."""
    la0, la = np.asarray(lat0, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    m_lat, m_lon = metres_per_degree((la0 + la) / 2)
    return (np.asarray(lon) - np.asarray(lon0)) * m_lon, (la - la0) * m_lat


def distance_m(
    lat0: npt.ArrayLike, lon0: npt.ArrayLike, lat: npt.ArrayLike, lon: npt.ArrayLike
) -> FloatArray:
    east, north = displacement(lat0, lon0, lat, lon)
    return np.asarray(np.hypot(east, north))


class Frame:
    """A flat metric plane about one point (equirectangular). Exactly invertible, and over a
    city-sized area its scale error (< 1%) is far below any GPS error, so geometry
    (distances to a border, buffers) can be done in plain metres."""

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0, self.lon0 = lat0, lon0
        m_lat, m_lon = metres_per_degree(lat0)
        self.ky, self.kx = float(m_lat), float(m_lon)

    def xy(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        return (
            (np.asarray(lon, dtype=np.float64) - self.lon0) * self.kx,
            (np.asarray(lat, dtype=np.float64) - self.lat0) * self.ky,
        )

    def latlon(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        return (
            np.asarray(y, dtype=np.float64) / self.ky + self.lat0,
            np.asarray(x, dtype=np.float64) / self.kx + self.lon0,
        )

    def to_metric(self, geom: shapely.Geometry) -> shapely.Geometry:
        """A WGS-84 (lon, lat) geometry in this frame's metres."""
        return shapely.transform(geom, lambda c: np.column_stack(self.xy(c[:, 1], c[:, 0])))

    def to_wgs84(self, geom: shapely.Geometry) -> shapely.Geometry:
        def back(c: FloatArray) -> FloatArray:
            lat, lon = self.latlon(c[:, 0], c[:, 1])
            return np.column_stack((lon, lat))

        return shapely.transform(geom, back)
