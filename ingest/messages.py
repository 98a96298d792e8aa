"""Wire formats devices send (spec 4.1, and OwnTracks for phones), as msgspec schemas.

Types are strict: a string where a number belongs is rejected, not coerced, because a
device that sends it is broken and an operator should see that.
"""

from __future__ import annotations

import msgspec


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


class OwnTracksMessage(msgspec.Struct, frozen=True, rename={"type_": "_type"}):
    """What the OwnTracks app publishes on `owntracks/<user>/<device>` (its own format):
    we use `location` messages; `tst` is epoch seconds, `vel` km/h, `bs` battery status."""

    type_: str
    lat: float | None = None
    lon: float | None = None
    tst: int | None = None
    acc: float | None = None
    batt: int | None = None
    bs: int | None = None  # 0 unknown, 1 unplugged, 2 charging, 3 full
    vel: float | None = None
    cog: float | None = None
