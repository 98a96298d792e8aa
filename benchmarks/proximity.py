"""`python -m benchmarks.proximity [--people 100000]`: the cost of the proximity check
(geofence.together) at a province's head count, on this machine, one core.

Everyone lives in one 30 km square (a city's density, the worst case for gatherings: about
ten people in the nine cells around each fix), one in ten under a no-contact order with
one other person, gatherings watched. Each sighting is one person a few metres on from
their last, in time order at one fix per 30 s per person. Prints one JSON object:
sightings a second through `Together.see`, and microseconds per sighting; with
`--redis URL`, also the cost of writing each sighting's latest position to a Redis GEO set
and hash (pipelined per batch of 500, as the ingest loop would after a commit).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from geofence.model import Gathering, NoContact
from geofence.proximity import Sighting
from geofence.together import Together
from simulators.geo import offset

LIANDU_SEAT = (28.4710386, 119.9183933)  # 莲都区 city seat, WGS-84 (data/README.md)


def _people(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    east, north = rng.uniform(0, 30_000, n), rng.uniform(0, 30_000, n)
    return offset(LIANDU_SEAT[0], LIANDU_SEAT[1], east, north)


def run(people: int, sightings: int, redis_url: str | None) -> dict[str, object]:
    rng = np.random.default_rng(17)
    lat, lon = _people(people, rng)
    ids = [f"S{k:06d}" for k in range(people)]
    orders = [NoContact(f"NC{k}", (ids[2 * k], ids[2 * k + 1])) for k in range(0, people // 20)]
    together = Together(orders, Gathering())
    step_ms = 30_000 / people  # one fix per 30 s per person
    who = rng.integers(0, people, sightings)
    walk = rng.normal(0, 1.5e-5, (sightings, 2))
    batch = [
        Sighting(ids[p], f"T{p}", float(lat[p] + dy), float(lon[p] + dx), 16.0, int(k * step_ms))
        for k, (p, (dy, dx)) in enumerate(zip(who, walk, strict=True))
    ]
    # Everyone seen once first: the steady state has a latest position for all.
    for p in range(people):
        together.see(Sighting(ids[p], f"T{p}", float(lat[p]), float(lon[p]), 16.0, -1))
    started = time.perf_counter()
    raised = sum(len(together.see(s)) for s in batch)
    took = time.perf_counter() - started
    out: dict[str, object] = {
        "people": people,
        "no_contact_orders": len(orders),
        "sightings": sightings,
        "see_per_s": round(sightings / took),
        "see_us": round(took / sightings * 1e6, 1),
        "verdicts": raised,  # people who happen to meet under an order, or gather
        "load_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    if redis_url:
        out.update(_redis(redis_url, batch))
    return out


def _redis(url: str, batch: list[Sighting]) -> dict[str, object]:
    import redis

    client = redis.Redis.from_url(url)
    geo, latest = f"bench:proximity:{os.getpid()}:geo", f"bench:proximity:{os.getpid()}:latest"
    started = time.perf_counter()
    try:
        for k in range(0, len(batch), 500):
            pipe = client.pipeline(transaction=False)
            for s in batch[k : k + 500]:
                pipe.geoadd(geo, (s.lon, s.lat, s.person))
                pipe.hset(latest, s.person, f"{s.lat},{s.lon},{s.radius},{s.ts}")
            pipe.execute()
        took = time.perf_counter() - started
        # The lookup a live check makes for a gathering: who is within 300 m.
        probes = batch[:2000]
        started = time.perf_counter()
        for s in probes:
            client.geosearch(geo, longitude=s.lon, latitude=s.lat, radius=300, unit="m")
        search = time.perf_counter() - started
    finally:
        client.delete(geo, latest)
        client.close()
    return {
        "redis_write_per_s": round(len(batch) / took),
        "redis_geosearch_us": round(search / len(probes) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--sightings", type=int, default=200_000)
    parser.add_argument("--redis", default=None, help="also time Redis GEO writes and searches")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.people, args.sightings, args.redis)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
