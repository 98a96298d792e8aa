"""The load generator, one process per share of the fleet: spec 4.1 `em/<device>/loc`
messages over QoS 1, each device one fix per `interval` seconds (`--batch` fixes per
message), or as fast as the broker acknowledges (`--interval 0`). With `--credit`, it
sends no more messages in total than the last number the orchestrator wrote on stdin
(how it keeps a flat-out generator a bounded distance ahead of the consumer).

Devices report in turn (device i of n at i/n of each period), so the rate is even. A
device's fixes are stamped with the wall clock when built (strictly increasing per
device), earlier fixes of a batch `interval` apart, as a tag that buffers them would.

stdout is JSON lines for the orchestrator: a progress line every quarter second
(`t` wall time, `sent` and `acked` messages, `held_s` spent waiting for credit) and a
final line with `done`. With
`--record`, the crossers' fixes are saved as (device index, ts, wall time sent) to join
with the alerts they cause.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks import fleet as fleets
from benchmarks.mqttpub import Publisher
from ingest.topics import LOC, tag

CHUNK = 1000  # messages built and written at a time
TICK_S = 0.01
REPORT_S = 0.25
DRAIN_S = 10.0
_FIELDS = b'"seq":%d,"ts":%d,"lat":%.6f,"lon":%.6f,"acc":8.0,"src":"gps","batt":80'
_SINGLE = b'{"v":1,' + _FIELDS + b"}"
_ENTRY = b"{" + _FIELDS + b"}"


class Generator:
    def __init__(self, fleet: fleets.Fleet, part: int, parts: int, batch: int, interval: float):
        self.fleet = fleet
        self.batch = batch
        self.step_ms = int(interval * 1000)
        self.global_index = part + parts * np.arange(len(fleet), dtype=np.int64)
        self.topics = [tag(fleets.device_id(int(d)), LOC).encode() for d in self.global_index]
        self.last_ts = np.zeros(len(fleet), dtype=np.int64)
        self.records: list[npt.NDArray[np.float64]] = []

    def messages(self, first: int, count: int) -> list[tuple[bytes, bytes]]:
        """Messages `first`..`first + count - 1` of this share (count <= devices)."""
        n, b = len(self.fleet), self.batch
        index = np.arange(first, first + count, dtype=np.int64)
        dev = index % n
        k = np.arange(b, dtype=np.int64)
        now_ms = int(time.time() * 1000)
        ts = np.maximum(now_ms - (b - 1 - k) * self.step_ms, self.last_ts[dev][:, None] + 1 + k)
        self.last_ts[dev] = ts[:, -1]
        seq = (index // n)[:, None] * b + k + 1
        lat, lon = self.fleet.positions(dev, ts)
        self._record(dev, ts)
        rows = zip(seq.tolist(), ts.tolist(), lat.tolist(), lon.tolist(), strict=True)
        topics = [self.topics[d] for d in dev.tolist()]
        if b == 1:
            return [
                (t, _SINGLE % (s[0], tt[0], la[0], lo[0]))
                for t, (s, tt, la, lo) in zip(topics, rows, strict=True)
            ]
        return [
            (
                t,
                b'{"v":1,"batch":['
                + b",".join(map(_ENTRY.__mod__, zip(s, tt, la, lo, strict=True)))
                + b"]}",
            )
            for t, (s, tt, la, lo) in zip(topics, rows, strict=True)
        ]

    def _record(self, dev: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> None:
        crossing = self.fleet.crosser[dev]
        if crossing.any():
            d = np.repeat(self.global_index[dev[crossing]], self.batch)
            t = ts[crossing].ravel()
            # The wall time the write starts: the caller sends right after building.
            wall = np.full(len(t), time.time())
            self.records.append(np.column_stack([d, t, wall]).astype(np.float64))

    def save_records(self, path: Path) -> None:
        rows = np.concatenate(self.records) if self.records else np.empty((0, 3))
        np.save(path, rows)


class Credit:
    """The total number of messages the orchestrator allows: the largest number in the
    lines it has written to stdin so far (read without blocking)."""

    def __init__(self) -> None:
        self.allowed = 0
        self._partial = b""
        os.set_blocking(sys.stdin.fileno(), False)

    def poll(self) -> int:
        try:
            data = os.read(sys.stdin.fileno(), 65_536)
        except BlockingIOError:
            return self.allowed
        *lines, self._partial = (self._partial + data).split(b"\n")
        self.allowed = max([self.allowed, *(int(line) for line in lines if line.strip())])
        return self.allowed


def run(args: argparse.Namespace) -> None:
    fleet = fleets.load(Path(args.fleet)).part(args.part, args.parts)
    gen = Generator(fleet, args.part, args.parts, args.batch, args.interval)
    host, _, port = args.mqtt.rpartition(":")
    pub = Publisher(host, int(port), f"bench-gen-{args.part}-{time.time_ns()}", args.window)
    credit = Credit() if args.credit else None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    period = args.batch * args.interval
    rate = len(fleet) / period if period > 0 else None  # messages/s; None: flat out
    start = time.monotonic()
    end = start + args.seconds
    next_report = start
    behind_max = 0
    held = 0.0
    while not stopping and (now := time.monotonic()) < end:
        due = pub.sent + pub.free if rate is None else int((now - start) * rate) + 1
        behind_max = max(behind_max, due - pub.sent)
        if credit is not None:
            due = min(due, credit.poll())
        count = min(due - pub.sent, pub.free, len(fleet), CHUNK)
        if count > 0:
            pub.publish(gen.messages(pub.sent, count))
            pub.wait(0)
        elif credit is not None and credit.allowed <= pub.sent:
            pub.wait(TICK_S)  # held back: the consumer is too far behind
            held += time.monotonic() - now
        elif rate is not None and pub.free > 0:
            # Sleep past the next due message by a tick, so messages go out in groups:
            # per-write overhead, not per message (their fixes are stamped when built).
            pub.wait(min(REPORT_S, max(0.0, start + (pub.sent + 1) / rate - now) + TICK_S))
        else:
            pub.wait(0.05)  # the window is full
        if now >= next_report:
            _emit(t=time.time(), sent=pub.sent, acked=pub.acked, held_s=round(held, 2))
            next_report += REPORT_S
    drained = pub.drain(DRAIN_S)
    pub.close()
    if args.record:
        gen.save_records(Path(args.record))
    _emit(
        t=time.time(),
        sent=pub.sent,
        acked=pub.acked,
        held_s=round(held, 2),
        done=True,
        drained=drained,
        # How far pacing fell behind its schedule at worst, in seconds (0 = kept up).
        behind_max_s=round(behind_max / rate, 3) if rate else None,
    )


def _emit(**line: object) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt", required=True, help="broker host:port")
    parser.add_argument("--fleet", required=True, help="fleet arrays (benchmarks.fleet.save)")
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--window", type=int, default=10_000, help="unacknowledged messages")
    parser.add_argument("--credit", action="store_true", help="send only what stdin allows")
    parser.add_argument("--record", default=None, help="save crossers' send times here (.npy)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
