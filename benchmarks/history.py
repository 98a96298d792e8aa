"""Days of realistic ankle-tag fixes for the storage benchmark (benchmarks.storage): each
person sleeps at home (a still night, GNSS drifting indoors), rides to work and back on an
e-bike, runs errands in the evening (simulators.life), and their tag reports every
`interval_s` through the simulators' GNSS/wifi/cell model (simulators.gps) — noise, indoor
drift, fixes without a position, all as ingest stores them (storage.fixes.COLUMNS).

A day comes as columns (`Fixes`), built with numpy from the model's arrays: people's days
are merged by time and turned into rows only when they are COPYed, so generating 50 M
fixes takes minutes rather than an hour of per-fix Python."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from simulators import lishui
from simulators.gps import NO_FIX, SOURCES, GpsModel, GpsProfile
from simulators.life import local_ms, minutes, routine
from simulators.route import Env, Mode, RouteBuilder

DAY_MS = 86_400_000
_SOURCE_NAMES = np.array([*SOURCES, None], dtype=object)  # index NO_FIX (-1): no source
# geofence.model.Quality of a fix, and the zone state ingest stores with it.
_FINE, _NO_POSITION, _ACC_POOR = 0, 1, 4
_ZONE_STATES = np.array(["in", None, None, None, "uncertain"], dtype=object)


def device(person: int) -> str:
    return f"T{person:07d}"


def supervisee(person: int) -> str:
    return f"P{person:07d}"


@dataclass(frozen=True)
class Fixes:
    """Fixes as columns: times in epoch ms; lat/lon/acc/spd/hdg NaN where the tag reports
    none (no position; no speed or heading off a wifi or cell fix)."""

    person: npt.NDArray[np.int32]
    seq: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    received_at: npt.NDArray[np.int64]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    acc: npt.NDArray[np.float64]
    src: npt.NDArray[np.int8]  # index into SOURCES, NO_FIX without a position
    spd: npt.NDArray[np.float64]
    hdg: npt.NDArray[np.float64]
    batt: npt.NDArray[np.int16]
    chg: npt.NDArray[np.bool_]
    quality: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def by_time(cls, days: Sequence[Fixes]) -> Fixes:
        """Several people's fixes merged by time, as ingest commits them (a stable sort:
        one person's fixes keep their order)."""
        order = np.argsort(np.concatenate([d.ts for d in days]), kind="stable")
        columns = (f.name for f in fields(cls))
        return cls(**{c: np.concatenate([getattr(d, c) for d in days])[order] for c in columns})

    def rows(self) -> list[tuple[Any, ...]]:
        """The fixes as rows in the order of storage.fixes.COLUMNS (None where a column
        has no value)."""
        people = np.unique(self.person)
        index = np.searchsorted(people, self.person)
        devices = np.array([device(int(p)) for p in people], dtype=object)[index]
        wearers = np.array([supervisee(int(p)) for p in people], dtype=object)[index]
        return list(
            zip(
                devices.tolist(),
                wearers.tolist(),
                self.seq.tolist(),
                self.ts.tolist(),
                self.received_at.tolist(),
                _nullable(self.lat),
                _nullable(self.lon),
                _nullable(self.acc),
                _SOURCE_NAMES[self.src].tolist(),
                _nullable(self.spd),
                _nullable(self.hdg),
                self.batt.tolist(),
                self.chg.tolist(),
                repeat("ok"),
                self.quality.tolist(),
                _ZONE_STATES[self.quality].tolist(),
                strict=False,  # the strap's state repeats
            )
        )


def _nullable(values: npt.NDArray[np.float64]) -> list[float | None]:
    out = values.astype(object)
    out[np.isnan(values)] = None
    return out.tolist()


def person_days(
    person: int, first: date, days: int, interval_s: float, seed: int
) -> Iterator[Fixes]:
    """The person's fixes, one day (Shanghai time) after another."""
    rng = np.random.default_rng((seed, person))
    home = lishui.interior_point(rng, min_depth_m=800, within_m=6000)
    work = lishui.interior_point(rng, min_depth_m=800, near=home, within_m=5000)
    profile = GpsProfile(gnss=str(rng.choice(["bds", "mixed", "gps"])))
    gps = GpsModel(profile, int(rng.integers(2**31)))
    battery = float(rng.uniform(60, 95))
    drain = interval_s / 3600 * 1.1  # battery % per report
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
        n = len(seen)
        delays = rng.integers(300, 4000, n)
        # The battery drains by the report and is charged back to 95 % below 20 %.
        levels, charging = np.empty(n), np.zeros(n, dtype=np.bool_)
        for i in range(n):
            battery -= drain
            if battery < 20:
                battery, charging[i] = 95.0, True
            levels[i] = battery
        poor = seen.fix & (seen.acc > 100)  # Quality.ACC_POOR: judged uncertain
        yield Fixes(
            person=np.full(n, person, dtype=np.int32),
            seq=np.arange(seq + 1, seq + n + 1, dtype=np.int64),
            ts=seen.ts,
            received_at=seen.ts + delays,
            lat=np.round(seen.lat, 6),  # tags report 1e-6°; NaN without a position
            lon=np.round(seen.lon, 6),
            acc=np.where(seen.fix, np.round(seen.acc, 1), np.nan),
            src=np.where(seen.fix, seen.src, NO_FIX).astype(np.int8),
            spd=np.round(seen.spd, 1),
            hdg=np.round(seen.hdg),
            batt=levels.astype(np.int16),
            chg=charging,
            quality=np.where(poor, _ACC_POOR, np.where(seen.fix, _FINE, _NO_POSITION)).astype(
                np.int8
            ),
        )
        seq += n
