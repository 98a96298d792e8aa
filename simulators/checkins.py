"""Check-ins (定位签到) in generated scenarios: the person's phones are asked at each due time
of their schedule (drawn as `fencewatch replay` draws them, supervision.checkin_book), answer
the request after the plan's `answer_delay_s` — or not, within its `ignores` — and the
owner, when the phone is with them and they answer at all, passes the app's face
verification (a ping on topic `checkin`).

The truth is what the wire shows: a check-in is missed unless a phone fix taken in its
window (from a minute before it is due to its deadline), ANSWER_ACC_M accurate or better,
and — when a face is wanted — a passed verification both reached the service by the
deadline. A check-in that hangs on a fix near the accuracy limit or the window's edges is
optional: neither side of it says much about an engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np

from fencewatch.timefmt import epoch_ms, iso, utc
from simulators.device import DevicePlan, DeviceSim
from simulators.geo import distance_m
from simulators.life import TZ
from simulators.messages import Message
from simulators.pursuit import LATENCY_MS
from simulators.route import Track
from simulators.truth import Truth
from simulators.uplink import Ping
from supervision.checkin_book import REPLAY_SECRET, TOPIC
from supervision.checkin_rules import ANSWER_ACC_M, ANSWER_SLACK, TYPE, Schedule, day_plan

WITH_M = 200.0  # the owner can take a face verification on a phone this near
_FACE_S = (20.0, 120.0)  # opening the app and looking at it
_SLACK_MS = int(ANSWER_SLACK.total_seconds() * 1000)
_EDGE_MS = 30_000
_ACC_BAND = (0.8 * ANSWER_ACC_M, 1.2 * ANSWER_ACC_M)


def asked(person: str, schedule: Schedule, start: int, end: int) -> list[tuple[int, int]]:
    """(due, deadline) of the person's check-ins due after `start` whose deadline is before
    `end`, epoch ms."""
    first, last = utc(start).astimezone(TZ).date(), utc(end).astimezone(TZ).date()
    out = []
    day = first
    while day <= last:
        for due, _ in day_plan(person, day, schedule, TZ, REPLAY_SECRET):
            a = epoch_ms(due)
            b = a + schedule.deadline_s * 1000
            if start < a and b < end:
                out.append((a, b))
        day += timedelta(days=1)
    return out


def answering(plan: DevicePlan, dues: Sequence[int], end: int) -> list[Message]:
    """Everything the phone emits until `end`, asked for its location at each due time."""
    sim = DeviceSim(plan)
    out: list[Message] = []
    for due in sorted(dues):
        landing = due + LATENCY_MS // 2
        if landing >= end:
            break
        out += sim.advance(landing)
        sim.report_location()
    return out + sim.advance(end)


def verifications(
    person: str,
    track: Track,
    phone: DevicePlan,
    checks: Sequence[tuple[int, int]],
    rng: np.random.Generator,
) -> list[Ping]:
    """The owner's face verifications: for each check-in the phone does not ignore and that
    finds it with them, a pass after the phone's answer delay."""
    out = []
    for due, _ in checks:
        if any(a <= due and (b is None or due < b) for a, b in phone.ignores):
            continue
        me, it = track.at([due]), phone.track.at([due])
        if distance_m(me.lat[0], me.lon[0], it.lat[0], it.lon[0]) > WITH_M:
            continue
        at = due + int((phone.answer_delay_s + rng.uniform(*_FACE_S)) * 1000)
        payload = {"supervisee": person, "due": iso(due), "verdict": "pass"}
        out.append(Ping(at, TOPIC, payload))
    return out


def checkin_truth(
    person: str,
    phones: dict[str, str],
    checks: Sequence[tuple[int, int]],
    face: bool,
    pings: Sequence[Ping],
    clock_end: int,
) -> list[Truth]:
    """The check-ins the wire shows missed. `phones`: OwnTracks topic → device id. One whose
    deadline the replay clock (the last ping) barely passes, if at all, is optional."""
    out = []
    for due, deadline in checks:
        fixes = [
            (p.at, int(e["tst"]) * 1000, float(e.get("acc", 1e9)))
            for p in pings
            if p.topic in phones and p.at <= deadline + _EDGE_MS
            for e in (p.payload if isinstance(p.payload, list) else [p.payload])
            if e.get("_type") == "location"
        ]
        asked_for = {"supervisee": person, "due": iso(due), "verdict": "pass"}
        faces = [p.at for p in pings if p.topic == TOPIC and p.payload == asked_for]
        # Answered beyond doubt; answered on the most lenient reading (then no one can
        # fault an engine either way).
        sure = _answered(fixes, faces, face, due, deadline, -_EDGE_MS, _ACC_BAND[0])
        maybe = _answered(fixes, faces, face, due, deadline, _EDGE_MS, _ACC_BAND[1])
        if sure:
            continue
        event: Truth = {
            "type": TYPE,
            "supervisee": person,
            "device": next(iter(phones.values())),
            "start": due,
            "end": deadline,
        }
        if maybe or deadline >= clock_end - _EDGE_MS:
            event["optional"] = True
        out.append(event)
    return out


def _answered(
    fixes: Sequence[tuple[int, int, float]],
    faces: Sequence[int],
    face: bool,
    due: int,
    deadline: int,
    edge: int,
    acc: float,
) -> bool:
    """A good fix (arrived, taken, accurate) and, if wanted, a pass, each by the deadline;
    `edge` widens (or, negative, narrows) every time limit, `acc` is the accuracy wanted."""
    fixed = any(
        at <= deadline + edge and due - _SLACK_MS - edge <= ts <= deadline + edge and a <= acc
        for at, ts, a in fixes
    )
    return fixed and (not face or any(at <= deadline + edge for at in faces))


def minutes_of(*instants: int) -> tuple[str, ...]:
    """Local HH:MM of each instant (epoch ms): a schedule's daily times."""
    return tuple(utc(t).astimezone(TZ).strftime("%H:%M") for t in instants)
