"""The network between a device and the broker, for recorded scenarios: when each message
reaches the broker (`at`), and in what shape.

- Latency: most messages arrive within a second or two.
- Coverage gaps: a tag keeps its fixes and, when it can reach the broker again, uploads
  them as `batch` messages (`at` ≫ `ts`). Some firmware sends the backlog first; some
  sends the live fix first and trickles the backlog after it, so old fixes arrive after
  newer ones. An OwnTracks phone queues its messages and, back in coverage, publishes
  them as JSON arrays.
- QoS 1: a message whose PUBACK was lost is published again, arriving a second time,
  often after newer messages; the messages in flight when the link dropped are sent
  again after the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest import topics
from simulators.messages import Message, Payload, batch

Body = Payload | list[Payload]  # one publish: a message, or an OwnTracks phone's array


@dataclass(frozen=True)
class LinkPlan:
    gaps: tuple[tuple[int, int], ...] = ()  # (from, to) epoch ms without network
    batch_max: int = 30
    backlog_first: bool = True
    redeliver: float = 0.0  # chance that any message is delivered twice
    resend_on_reconnect: int = 0  # messages before a gap that are published again after it
    shuffle_ms: float = 0.0  # every delivery held up to this long more: arrival order scrambled
    latency_median_ms: float = 800.0


@dataclass(frozen=True, slots=True)
class Ping:
    at: int
    topic: str
    payload: Body


def _latencies(rng: np.random.Generator, link: LinkPlan, n: int) -> list[int]:
    drawn = rng.lognormal(np.log(link.latency_median_ms), 0.6, n)
    return np.clip(drawn, 150, 20_000).astype(np.int64).tolist()


def fold(messages: list[Message], batch_max: int) -> list[list[Message]]:
    """How a device sends what it held: runs of fixes become batches (a tag) or arrays (an
    OwnTracks phone) of up to `batch_max`; events go on their own."""
    groups: list[list[Message]] = []
    for m in messages:
        last = groups[-1] if groups else None
        if m.entry and last is not None and last[-1].entry and len(last) < batch_max:
            last.append(m)
        else:
            groups.append([m])
    return groups


def wire(group: list[Message]) -> tuple[str, Body]:
    """The (topic, payload) that carries a group from `fold`."""
    if len(group) == 1:
        return group[0].topic, group[0].payload
    if topics.protocol(group[0].topic) == topics.OWNTRACKS:
        return group[0].topic, [m.payload for m in group]
    return group[0].topic, batch([m.payload for m in group])


def deliver(messages: list[Message], link: LinkPlan, rng: np.random.Generator) -> list[Ping]:
    """The pings the broker receives from one device, in arrival order."""
    gaps = sorted(link.gaps)
    live: list[Ping] = []
    held: list[list[Message]] = [[] for _ in gaps]
    for m, latency in zip(messages, _latencies(rng, link, len(messages)), strict=True):
        g = next((k for k, (a, b) in enumerate(gaps) if a <= m.ts < b), None)
        if g is None:
            live.append(Ping(m.ts + latency, m.topic, m.payload))
        else:
            held[g].append(m)
    extra: list[Ping] = []
    for (start, end), buffered in zip(gaps, held, strict=True):
        back = int(end + rng.uniform(3_000, 40_000))
        if link.resend_on_reconnect:
            before = [p for p in live if p.at < start][-link.resend_on_reconnect :]
            extra += [Ping(back + 50 * k, p.topic, p.payload) for k, p in enumerate(before)]
        sent = back + 500
        for group in fold(buffered, link.batch_max):
            extra.append(Ping(sent, *wire(group)))
            sent += 200 if link.backlog_first else int(rng.uniform(5_000, 20_000))
        # Live fixes wait for the reconnect, and on backlog-first firmware for the backlog.
        hold = sent if link.backlog_first else back
        live = [Ping(hold + 100, p.topic, p.payload) if end <= p.at < hold else p for p in live]
    out = live + extra
    for p in list(out):
        if link.redeliver and rng.uniform() < link.redeliver:
            delay = rng.uniform(5_000, 60_000) if rng.uniform() < 0.5 else rng.uniform(1.2e5, 9e5)
            out.append(Ping(p.at + int(delay), p.topic, p.payload))
    if link.shuffle_ms:
        out = [Ping(p.at + int(rng.uniform(0, link.shuffle_ms)), p.topic, p.payload) for p in out]
    out.sort(key=lambda p: p.at)
    return out
