"""Wire formats devices send (spec 4.1, and OwnTracks for phones), as msgspec schemas, and
`Invalid`, what a message that does not fit them raises.

Types are strict: a string where a number belongs is rejected, not coerced, because a
device that sends it is broken and an operator should see that. OwnTracks times are the
one exception (`Seconds`): the apps themselves have sent them as strings.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Invalid(Exception):
    """A message, or a part of one, that cannot be kept: `reason` is one of a small fixed
    set (a metrics label), `detail` says exactly what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_json(decoder: msgspec.json.Decoder, raw: bytes | msgspec.Raw, what: str) -> Any:
    """`raw` as `decoder`'s schema, or Invalid saying how `what` fails it."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Invalid("schema", f"{what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Invalid("malformed", f"{what}: not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise Invalid("malformed", f"{what}: not valid UTF-8") from None
    except RecursionError:
        raise Invalid("malformed", f"{what}: nested too deeply") from None


class FixEntry(msgspec.Struct, frozen=True):
    """One fix: a single-fix `loc` message, or one entry of a `batch`."""

    seq: int
    ts: int
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    src: str | None = None
    spd: float | None = None
    hdg: float | None = None
    batt: int | None = None
    chg: bool | None = None
    strap: str | None = None
    fix: bool = True
    crs: str | None = None


class LocMessage(msgspec.Struct, frozen=True):
    """`em/<device>/loc`: one fix (the FixEntry fields at top level), or `batch`."""

    v: int = 1
    dev: str | None = None  # optional: when present it must match the topic
    # Entries are decoded one by one, so one bad entry does not cost the good ones.
    batch: list[msgspec.Raw] | None = None


class LocBatch(msgspec.Struct, frozen=True):
    """The same message with its batch typed: one decoder call for a well-formed batch.
    When it fails, LocMessage's entry-by-entry path says which entries were bad."""

    v: int = 1
    dev: str | None = None
    batch: list[FixEntry] | None = None


class EvtMessage(msgspec.Struct, frozen=True):
    """`em/<device>/evt`."""

    seq: int
    ts: int
    type: str
    v: int = 1
    dev: str | None = None


class OwnTracksEnvelope(msgspec.Struct, frozen=True, rename={"type_": "_type"}):
    """Any OwnTracks message (its own JSON format, on `owntracks/<user>/<device>[/…]`): the
    `_type` says how to read the rest."""

    type_: str


# OwnTracks times are epoch seconds; the apps send numbers, but old iOS versions sent some
# (an `lwt`'s, a location's) as numeric strings, and the recorder stores them so.
Seconds = int | str


class OwnTracksLocation(msgspec.Struct, frozen=True):
    """`_type: location`: `tst` when the fix was taken, `vel` km/h, `cog` degrees, `bs`
    battery status (0 unknown, 1 unplugged, 2 charging, 3 full). The apps send -1 for a
    value they do not have (iOS: `cog`, `vel`; others: `acc`, `batt`). Everything else the
    apps add (alt, vac, t, m, conn, tid, created_at, inregions, SSID, BSSID, p, topic…) is
    read past: nothing here needs it."""

    lat: float
    lon: float
    tst: Seconds
    acc: float | None = None
    batt: int | None = None
    bs: int | None = None
    vel: float | None = None
    cog: float | None = None


class OwnTracksLwt(msgspec.Struct, frozen=True):
    """`_type: lwt`, the will the broker publishes when the app's connection dies; `tst` is
    when that connection was made (the will is set on connecting)."""

    tst: Seconds | None = None


class OwnTracksTransition(msgspec.Struct, frozen=True):
    """`_type: transition` (on `…/event`): the app entered or left one of its own regions
    (`desc`, `rid`) at `tst`; `wtst` is when the region was made."""

    tst: Seconds
    event: str
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    desc: str | None = None
    rid: str | None = None
    t: str | None = None
    wtst: int | None = None
