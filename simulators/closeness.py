"""Ground truth for people near people, from the people's true paths (not their devices').

- `contact`: two people under a no-contact order truly within its distance. A real event
  (one for each of the two) when they were within half the distance for the order's
  confirmation time plus five minutes — a meeting, with room for GPS error and the
  engine's confirmation; optional when they were within the distance at least the
  confirmation time less a minute but not that surely (a brush at the order's edge); no
  event for less (passing on a street): an alert there is a false one.
- `protected_proximity`: a supervisee truly within the distance of the person they must
  keep away from, by the same rule as a contact (the distance and confirmation time of the
  protection).
- `gathering`: `size` or more people each truly within the radius of every other. Real when
  within half the radius for the hold time plus five minutes, optional from the hold time
  less a minute; the event names all who were in it (`people`) and is matched by an alert
  on any of them (simulators.score). Nobody truly at their workplace is at one.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from simulators.geo import distance_m
from simulators.route import Track
from simulators.truth import STEP_MS, Truth, _edges, _runs

MARGIN_MS = 5 * 60_000
EDGE_MS = 60_000


def _longest(mask: npt.NDArray[np.bool_], times: npt.NDArray[np.int64]) -> int:
    spans = [int(times[min(b, len(times) - 1)] - times[a]) for a, b in _edges(mask)]
    return max(spans, default=0)


def _episodes(
    near: npt.NDArray[np.bool_],
    sure: npt.NDArray[np.bool_],
    times: npt.NDArray[np.int64],
    hold_ms: int,
    clock_end: int,
) -> list[tuple[int, int | None, bool]]:
    """(start, end, optional) of each run of `near` long enough to count."""
    out = []
    for start, end in _runs(near, times):
        inside = (times >= start) & (times <= (end if end is not None else clock_end))
        if _longest(sure & inside, times) >= hold_ms + MARGIN_MS:
            out.append((start, end, False))
        elif (end if end is not None else clock_end) - start >= hold_ms - EDGE_MS:
            out.append((start, end, True))
    return out


def contact_truth(
    tracks: dict[str, Track], orders: list[dict[str, Any]], start: int, end: int
) -> list[Truth]:
    times = np.arange(start, end + 1, STEP_MS, dtype=np.int64)
    out: list[Truth] = []
    for order in orders:
        limit = float(order.get("distance_m", 200.0))
        hold_ms = int(order.get("confirm_s", 300)) * 1000
        for a, b in combinations(order["people"], 2):
            pa, pb = tracks[a].at(times), tracks[b].at(times)
            apart = distance_m(pa.lat, pa.lon, pb.lat, pb.lon)
            for s, e, optional in _episodes(
                apart <= limit, apart <= limit / 2, times, hold_ms, end
            ):
                for person in (a, b):
                    event: Truth = {"type": "contact", "supervisee": person, "device": ""}
                    out.append({**event, "start": s, "end": e, "with": b if person == a else a})
                    if optional:
                        out[-1]["optional"] = True
    return out


def protected_truth(
    tracks: dict[str, Track],
    protected: list[tuple[dict[str, Any], Track]],
    start: int,
    end: int,
) -> list[Truth]:
    """`protected_proximity`: the supervisee truly within the distance of the protected
    person, by the same rule as a contact."""
    times = np.arange(start, end + 1, STEP_MS, dtype=np.int64)
    out: list[Truth] = []
    for entry, bearer in protected:
        limit = float(entry.get("distance_m", 500.0))
        hold_ms = int(entry.get("confirm_s", 60)) * 1000
        person = entry["supervisee"]
        pa, pb = tracks[person].at(times), bearer.at(times)
        apart = distance_m(pa.lat, pa.lon, pb.lat, pb.lon)
        for s, e, optional in _episodes(apart <= limit, apart <= limit / 2, times, hold_ms, end):
            event: Truth = {"type": "protected_proximity", "supervisee": person, "device": ""}
            out.append({**event, "start": s, "end": e})
            if optional:
                out[-1]["optional"] = True
    return out


def gathering_truth(
    tracks: dict[str, Track],
    rule: dict[str, Any],
    start: int,
    end: int,
    workplaces: dict[str, dict[str, Any]] | None = None,
) -> list[Truth]:
    """Gatherings; a person truly at their workplace (a roster place) is at none."""
    size = int(rule.get("size", 3))
    radius = float(rule.get("radius_m", 100.0))
    hold_ms = int(rule.get("hold_s", 1200)) * 1000
    times = np.arange(start, end + 1, STEP_MS, dtype=np.int64)
    people = sorted(tracks)
    where = {p: tracks[p].at(times) for p in people}
    at_work = {p: np.zeros(len(times), dtype=bool) for p in people}
    for p, place in (workplaces or {}).items():
        away = distance_m(where[p].lat, where[p].lon, place["lat"], place["lon"])
        at_work[p] = away <= float(place.get("radius_m", 100.0))
    apart = {
        (a, b): np.where(
            at_work[a] | at_work[b],
            np.inf,
            distance_m(where[a].lat, where[a].lon, where[b].lat, where[b].lon),
        )
        for a, b in combinations(people, 2)
    }

    def together(limit: float) -> tuple[npt.NDArray[np.bool_], dict[int, set[str]]]:
        mask = np.zeros(len(times), dtype=bool)
        members: dict[int, set[str]] = {}
        for group in combinations(people, size):
            close = np.all([apart[pair] <= limit for pair in combinations(group, 2)], axis=0)
            mask |= close
            for k in np.flatnonzero(close).tolist():
                members.setdefault(k, set()).update(group)
        return mask, members

    near, members = together(radius)
    sure, _ = together(radius / 2)
    out: list[Truth] = []
    for s, e, optional in _episodes(near, sure, times, hold_ms, end):
        last = e if e is not None else end
        who = sorted(set().union(*(members[k] for k in members if s <= times[k] <= last)))
        event: Truth = {"type": "gathering", "supervisee": who[0], "device": "", "people": who}
        out.append({**event, "start": s, "end": e})
        if optional:
            out[-1]["optional"] = True
    return out
