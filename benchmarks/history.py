"""Days of realistic ankle-tag fixes for the storage benchmark (benchmarks.storage): each
person sleeps at home (a still night, GNSS drifting indoors), rides to work and back on an
e-bike, runs errands in the evening (simulators.life), and their tag reports every
`interval_s` through the simulators' GNSS/wifi/cell model (simulators.gps) — noise, indoor
drift, fixes without a position, all as ingest stores them (storage.fixes.COLUMNS)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np

from simulators import lishui
from simulators.gps import SOURCES, GpsModel, GpsProfile
from simulators.life import local_ms, minutes, routine
from simulators.route import Env, Mode, RouteBuilder

DAY_MS = 86_400_000


def device(person: int) -> str:
    return f"T{person:07d}"


def supervisee(person: int) -> str:
    return f"P{person:07d}"


def person_days(
    person: int, first: date, days: int, interval_s: float, seed: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The person's fixes, one day (Shanghai time) after another, as rows in the order of
    storage.fixes.COLUMNS with times as epoch ms."""
    rng = np.random.default_rng((seed, person))
    home = lishui.interior_point(rng, min_depth_m=800, within_m=6000)
    work = lishui.interior_point(rng, min_depth_m=800, near=home, within_m=5000)
    profile = GpsProfile(gnss=str(rng.choice(["bds", "mixed", "gps"])))
    gps = GpsModel(profile, int(rng.integers(2**31)))
    battery = float(rng.uniform(60, 95))
    seq = 0
    for d in range(days):
        day = date.fromordinal(first.toordinal() + d)
        start = local_ms(day, 0)
        b = RouteBuilder(rng, start, *home)
        b.stay_until(local_ms(day, float(rng.uniform(6.8, 8.2))), Env.INDOOR)
        if rng.uniform() < 5 / 7:  # a working day
            b.go(*work, Mode.EBIKE)
            b.stay(minutes(200, 260, rng), Env.INDOOR)
            b.linger(minutes(20, 50, rng), radius_m=120)
            b.stay_until(local_ms(day, float(rng.uniform(17.0, 18.5))), Env.INDOOR)
            b.go(*home, Mode.EBIKE)
        routine(b, rng, home, local_ms(day, 21.5), errands_per_h=0.3)
        b.stay_until(start + DAY_MS + 60_000, Env.INDOOR)
        track = b.track()
        times = np.arange(start, start + DAY_MS, int(interval_s * 1000), dtype=np.int64)
        times = times + rng.integers(-1500, 1500, len(times))
        seen = gps.observe(times, track.at(times))
        delays = rng.integers(300, 4000, len(times))
        rows: list[tuple[Any, ...]] = []
        for i, t in enumerate(seen.ts.tolist()):
            seq += 1
            battery = battery - interval_s / 3600 * 1.1
            charging = battery < 20
            if charging:
                battery = 95.0
            has = bool(seen.fix[i])
            poor = has and float(seen.acc[i]) > 100  # Quality.ACC_POOR: judged uncertain
            spd, hdg = float(seen.spd[i]), float(seen.hdg[i])
            rows.append(
                (
                    device(person),
                    supervisee(person),
                    seq,
                    t,
                    t + int(delays[i]),
                    round(float(seen.lat[i]), 6) if has else None,  # tags report 1e-6°
                    round(float(seen.lon[i]), 6) if has else None,
                    round(float(seen.acc[i]), 1) if has else None,
                    SOURCES[seen.src[i]] if has else None,
                    None if math.isnan(spd) else round(spd, 1),
                    None if math.isnan(hdg) else float(round(hdg)),
                    int(battery),
                    charging,
                    "ok",
                    (4 if poor else 0) if has else 1,  # geofence.model.Quality
                    ("uncertain" if poor else "in") if has else None,
                )
            )
        yield rows
