"""GCJ-02 ⇄ WGS-84, vectorized.

GCJ-02 is not a datum PROJ knows: it is the obfuscating offset mandated for Chinese web
maps (Amap, Tencent, DataV boundaries), a published closed-form function of WGS-84. The
forward function is exact; the inverse has no closed form, so it is solved by fixed-point
iteration (converges to well under a millimetre in a few steps). Outside mainland China the
offset is not applied, as every map provider does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

_A = 6378245.0  # Krasovsky 1940 semi-major axis, as the GCJ-02 formula uses
_EE = 0.00669342162296594323


def _in_china(lat: Array, lon: Array) -> npt.NDArray[np.bool_]:
    return (lon >= 72.004) & (lon <= 137.8347) & (lat >= 0.8293) & (lat <= 55.8271)


def _offset(lat: Array, lon: Array) -> tuple[Array, Array]:
    x = lon - 105.0
    y = lat - 35.0
    pi = np.pi
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    dlat += common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    dlon += common
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * pi)
    inside = _in_china(lat, lon)
    return np.where(inside, dlat, 0.0), np.where(inside, dlon, 0.0)


def wgs84_to_gcj02(lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[Array, Array]:
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    dlat, dlon = _offset(la, lo)
    return la + dlat, lo + dlon


def gcj02_to_wgs84(lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[Array, Array]:
    glat = np.asarray(lat, dtype=np.float64)
    glon = np.asarray(lon, dtype=np.float64)
    wlat, wlon = glat.copy(), glon.copy()
    for _ in range(30):
        flat, flon = wgs84_to_gcj02(wlat, wlon)
        elat, elon = flat - glat, flon - glon
        wlat -= elat
        wlon -= elon
        if (
            max(float(np.max(np.abs(elat), initial=0.0)), float(np.max(np.abs(elon), initial=0.0)))
            < 1e-10
        ):
            break
    return wlat, wlon
