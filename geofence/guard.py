"""Judging that no input can stop. When the engine raises on a batch, the batch is judged
again person by person, and a failing person's messages one at a time, so that what still
raises — a poison message, or a rule the engine cannot compute with — is set aside as a
`Fault` with its error while everyone else's messages are judged as always. The clock is
guarded the same way, one watchdog at a time.

The engine changes its state as it judges, so a failed attempt is undone before the next:
the state of the devices and people an attempt touches is captured (as bytes) before it
and put back after a failure. Pure like the engine: the caller records the faults.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from geofence.engine import Engine
from geofence.judge import Judged
from geofence.model import DeviceEvent, Fix, Verdict
from geofence.state import DeviceState, PersonState

# One message's fixes and events.
Message = tuple[Sequence[Fix], Sequence[DeviceEvent]]

_ERROR_CHARS = 500
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(
    tuple[dict[str, DeviceState | None], dict[str, PersonState | None]]
)


class Fault(msgspec.Struct, frozen=True):
    """An input the engine raised on: message `index` of the batch, or (None) a watchdog."""

    supervisee: str
    device: str
    error: str
    index: int | None = None


class Guarded(msgspec.Struct):
    judged: list[Judged] = msgspec.field(default_factory=list)
    verdicts: list[Verdict] = msgspec.field(default_factory=list)
    faults: list[Fault] = msgspec.field(default_factory=list)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


class _Saved:
    """The state of some devices and of the people wearing them, to put back."""

    def __init__(self, engine: Engine, devices: Iterable[str]) -> None:
        state, owner = engine.state, engine.rules.device_owner
        wanted = set(devices)
        people = {owner[d] for d in wanted if d in owner}
        self._blob = _ENCODER.encode(
            (
                {d: state.devices.get(d) for d in wanted},
                {p: state.people.get(p) for p in people},
            )
        )

    def restore(self, engine: Engine) -> None:
        devices, people = _DECODER.decode(self._blob)
        for table, saved in ((engine.state.devices, devices), (engine.state.people, people)):
            for key, value in saved.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value  # type: ignore[assignment]


def _device(message: Message) -> str | None:
    fixes, events = message
    first = fixes[0] if fixes else events[0] if events else None
    return first.device if first is not None else None


def _attempt(engine: Engine, messages: Sequence[Message], out: Guarded) -> str | None:
    """Judge `messages` together into `out`; on failure undo what the attempt changed and
    return the error."""
    fixes = [f for m in messages for f in m[0]]
    events = [e for m in messages for e in m[1]]
    saved = _Saved(engine, {f.device for f in fixes} | {e.device for e in events})
    try:
        outcome = engine.process(fixes, events)
    except Exception as exc:
        saved.restore(engine)
        return describe(exc)
    out.judged += outcome.judged
    out.verdicts += outcome.verdicts
    return None


def process(engine: Engine, messages: Sequence[Message]) -> Guarded:
    """`engine.process` of the messages' fixes and events, with every message the engine
    cannot judge set aside as a fault instead of raising."""
    out = Guarded()
    if _attempt(engine, messages, out) is None:
        return out
    owner = engine.rules.device_owner
    by_person: dict[str, list[int]] = {}
    for index, message in enumerate(messages):
        device = _device(message)
        if device is not None:
            by_person.setdefault(owner.get(device, ""), []).append(index)
    for person, indices in by_person.items():
        if _attempt(engine, [messages[i] for i in indices], out) is None:
            continue
        for i in indices:
            error = _attempt(engine, [messages[i]], out)
            if error is not None:
                device = _device(messages[i]) or ""
                out.faults.append(Fault(person, device, error, i))
                _heard_from(engine, messages[i], out)
    return out


def _heard_from(engine: Engine, message: Message, out: Guarded) -> None:
    """The device did report, though its message cannot be judged: count it as heard from,
    or its silence watchdog would call a working device offline. A `boot` event does that
    and nothing else; should even that fail, the device stays as it was."""
    fixes, events = message
    first: Fix | DeviceEvent = fixes[0] if fixes else events[0]
    boot = DeviceEvent(first.device, first.seq, first.ts, first.at, "boot")
    _attempt(engine, [((), (boot,))], out)


# -- the clock ------------------------------------------------------------------------------


def tick(engine: Engine, now: int) -> tuple[list[Verdict], list[Fault]]:
    """`engine.tick`, with a watchdog that raises set aside as a fault (its device is armed
    again by its next message) while the others fire."""
    verdicts: list[Verdict] = []
    faults: list[Fault] = []
    while True:
        due = engine.watchdogs_due(now)
        if not due:
            return verdicts, faults
        saved = _Saved(engine, (device for _, device in due))
        try:
            verdicts += engine.tick(now)
            return verdicts, faults
        except Exception as exc:
            saved.restore(engine)
            error = describe(exc)
        # Ticking pops in deadline order and stopped at the failing watchdog: it is the
        # last of the due entries no longer in the heap. The others go back as they were.
        waiting = engine.watchdogs_waiting()
        gone = sorted(entry for entry in due if entry[1] not in waiting)
        failed = gone.pop()
        engine.rearm(gone)
        engine.disarm(failed[1])
        owner = engine.rules.device_owner.get(failed[1], "")
        faults.append(Fault(owner, failed[1], error))
