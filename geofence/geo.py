"""Metres between two nearby fixes: an equirectangular approximation at the first one's
latitude, far inside GPS error over the few kilometres the stages compare."""

from __future__ import annotations

import math

M_PER_DEG = 111_195.0


def metres(lat: float, lon: float, lat2: float, lon2: float) -> float:
    dy = (lat2 - lat) * M_PER_DEG
    dx = (lon2 - lon) * M_PER_DEG * math.cos(math.radians(lat))
    return math.hypot(dx, dy)
