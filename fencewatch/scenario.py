"""A scenario directory (spec 4.2): zones.geojson, roster.json and pings.jsonl.

`fencewatch load` imports the first two into the database; `fencewatch replay` runs all
three through the engine with no servers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from geofence.limits import heightened_problems
from geofence.model import (
    DeviceRef,
    Gathering,
    Heightened,
    Leave,
    NoContact,
    Place,
    Protection,
    Roster,
    Supervisee,
    Window,
    ZoneDef,
)
from geofence.zones import CRSES, ZoneError, parse_feature_collection, parse_schedule
from ingest.jt808 import terminals
from ingest.osmand import ID_PATTERN as OSMAND_ID
from supervision.checkin_rules import Schedule, hhmm
from supervision.orders import OrderError, new_order

LEVELS = ("strict", "normal", "lenient")
_OSMAND_ID = re.compile(OSMAND_ID)


class ScenarioError(ValueError):
    pass


def check_folder(scenario_dir: Path, names: tuple[str, ...]) -> None:
    """Raise ScenarioError saying plainly what is not there: the folder, or its files."""
    if not scenario_dir.is_dir():
        raise ScenarioError("no such folder")
    missing = [name for name in names if not (scenario_dir / name).is_file()]
    if missing:
        raise ScenarioError(f"missing {', '.join(missing)} (the folder needs {', '.join(names)})")


class Ping(msgspec.Struct, frozen=True):
    at: int
    topic: str
    payload: msgspec.Raw


def iso_to_ms(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise ScenarioError(f"{what} must be an ISO-8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"{what} must be an ISO-8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ScenarioError(f"{what} needs a time zone offset (e.g. Z or +08:00): {value!r}")
    return int(parsed.timestamp() * 1000)


def read_zones(path: Path) -> list[ZoneDef]:
    return parse_feature_collection(msgspec.json.decode(path.read_bytes()))


def _device(raw: Any) -> DeviceRef:
    if isinstance(raw, str) and raw:
        return DeviceRef(id=raw)
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        kind = raw.get("kind", "tag")
        if kind not in ("tag", "phone"):
            raise ScenarioError(f"device {raw['id']}: kind must be tag or phone")
        owntracks = raw.get("owntracks")
        if owntracks is not None and (not isinstance(owntracks, str) or owntracks.count("/") != 1):
            raise ScenarioError(f"device {raw['id']}: owntracks must be '<user>/<device>'")
        osmand = raw.get("osmand")
        if osmand is not None and (not isinstance(osmand, str) or not _OSMAND_ID.match(osmand)):
            raise ScenarioError(
                f"device {raw['id']}: osmand must be the id the phone sends (1–64 printable"
                " characters, no spaces)"
            )
        if osmand is not None and kind != "phone":
            raise ScenarioError(f"device {raw['id']}: only a phone has an OsmAnd id")
        jt808 = raw.get("jt808")
        try:
            jt808 = None if jt808 is None else terminals.number(str(jt808))
        except ValueError as exc:
            raise ScenarioError(f"device {raw['id']}: jt808: {exc}") from None
        crs = raw.get("crs", "wgs84")
        if crs not in CRSES:
            raise ScenarioError(f"device {raw['id']}: crs must be one of {', '.join(CRSES)}")
        return DeviceRef(
            id=raw["id"], kind=kind, owntracks=owntracks, osmand=osmand, jt808=jt808, crs=crs
        )
    raise ScenarioError(f"a device must be an id or an object with an id, got {raw!r}")


def _schedule(raw: Any, what: str) -> tuple[Window, ...]:
    try:
        return parse_schedule(raw)
    except ZoneError as exc:
        raise ScenarioError(f"{what}: {exc}") from None


def parse_heightened(raw: Any) -> list[Heightened]:
    """Optional roster `heightened`: [{"from", "to", "name", "policy": {field: value},
    "offices": [office ids]}]; with `offices`, only supervisees of those offices."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError("heightened must be a list of periods")
    periods = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ScenarioError(f"heightened {i} must be an object")
        overrides = item.get("policy") or {}
        problems = heightened_problems(overrides)
        if problems:
            raise ScenarioError(f"heightened {i}: {'; '.join(problems)}")
        offices = item.get("offices") or []
        if not isinstance(offices, list) or not all(isinstance(o, str) and o for o in offices):
            raise ScenarioError(f"heightened {i}: offices must be a list of office ids")
        periods.append(
            Heightened(
                start=iso_to_ms(item.get("from"), f"heightened {i} from"),
                end=iso_to_ms(item.get("to"), f"heightened {i} to"),
                name=str(item.get("name", "")),
                policy=overrides,
                offices=frozenset(offices),
            )
        )
    return periods


def _ids(raw: Any, what: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str | int) for x in raw):
        raise ScenarioError(f"{what} must be a list of zone ids")
    return tuple(str(x) for x in raw)


def parse_workplace(raw: Any, what: str) -> str | Place | None:
    """Optional `workplace`: a zone id, or a place {"lat", "lon", "radius_m": 100, "name"}
    (WGS-84, radius 10 m to 5 km)."""
    if raw is None:
        return None
    if isinstance(raw, str) and raw:
        return raw
    if not isinstance(raw, dict):
        raise ScenarioError(f"{what} must be a zone id or a place {{lat, lon, radius_m}}")
    try:
        place = msgspec.convert(raw, Place)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"{what}: {exc}") from None
    if not (-90 <= place.lat <= 90 and -180 <= place.lon <= 180):
        raise ScenarioError(f"{what}: lat/lon out of range")
    if not 10 <= place.radius_m <= 5000:
        raise ScenarioError(f"{what}: radius_m must be 10 to 5000 metres")
    return place


def parse_supervisee(raw: Any) -> Supervisee:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise ScenarioError("each supervisee needs an id")
    sid = str(raw["id"])
    leaves = []
    for i, leave in enumerate(raw.get("leaves") or []):
        if not isinstance(leave, dict):
            raise ScenarioError(f"supervisee {sid}: leave {i} must be an object")
        start = iso_to_ms(leave.get("from"), f"supervisee {sid} leave {i} from")
        end = iso_to_ms(leave.get("to"), f"supervisee {sid} leave {i} to")
        if end <= start:
            raise ScenarioError(f"supervisee {sid}: leave {i} ends before it starts")
        returned = leave.get("returned")
        leaves.append(
            Leave(
                start=start,
                end=end,
                destinations=_ids(leave.get("destinations"), f"supervisee {sid} destinations"),
                id=str(leave.get("id", f"{sid}-leave-{i}")),
                returned_at=iso_to_ms(returned, "returned") if returned else None,
                schedule=_schedule(leave.get("schedule"), f"supervisee {sid} leave {i}"),
            )
        )
    home = raw.get("home")
    workplace = parse_workplace(raw.get("workplace"), f"supervisee {sid} workplace")
    level = raw.get("level", "normal")
    if level not in LEVELS:
        raise ScenarioError(f"supervisee {sid}: level must be one of {', '.join(LEVELS)}")
    return Supervisee(
        id=sid,
        jurisdiction=_ids(raw.get("jurisdiction"), f"supervisee {sid} jurisdiction"),
        exclusion=_ids(raw.get("exclusion"), f"supervisee {sid} exclusion"),
        home=str(home) if home is not None else None,
        workplace=workplace,
        devices=tuple(_device(d) for d in raw.get("devices") or []),
        leaves=tuple(leaves),
        level=level,
        name=str(raw.get("name", "")),
        office=raw.get("office"),
    )


def _positive(raw: Any, default: float, what: str) -> float:
    value = default if raw is None else raw
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ScenarioError(f"{what} must be a positive number, got {raw!r}")
    return float(value)


def parse_no_contact(raw: Any) -> list[NoContact]:
    """Optional roster `no_contact`: [{"id", "people": [supervisee ids, two or more],
    "distance_m": 200, "confirm_s": 300}]: every two of them must stay that far apart; being
    surely within it for `confirm_s` is a contact."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError("no_contact must be a list of orders")
    orders, ids = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ScenarioError(f"no_contact {i} must be an object")
        oid = str(item.get("id") or f"no-contact-{i}")
        if oid in ids:
            raise ScenarioError(f"no_contact {oid} is listed twice")
        ids.add(oid)
        people = item.get("people")
        if (
            not isinstance(people, list)
            or not all(isinstance(p, str) and p for p in people)
            or len(set(people)) < 2
        ):
            raise ScenarioError(f"no_contact {oid}: people must list two or more supervisee ids")
        distance = _positive(item.get("distance_m"), 200.0, f"no_contact {oid} distance_m")
        confirm = int(_positive(item.get("confirm_s"), 300, f"no_contact {oid} confirm_s"))
        orders.append(NoContact(oid, tuple(dict.fromkeys(people)), distance, confirm))
    return orders


def parse_protected(raw: Any, people: list[Supervisee]) -> list[Protection]:
    """Optional roster `protected`: [{"id", "supervisee", "device": {"id", "kind": "phone",
    "owntracks" | "osmand"}, "distance_m": 500, "confirm_s": 60, "sms": "+86…"}]: the
    protected person's phone, which no supervisee wears."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError("protected must be a list of protected persons")
    worn = {d.id for p in people for d in p.devices}
    out, ids = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ScenarioError(f"protected {i} must be an object")
        pid = str(item.get("id") or f"protected-{i}")
        if pid in ids:
            raise ScenarioError(f"protected {pid} is listed twice")
        ids.add(pid)
        supervisee = item.get("supervisee")
        if not isinstance(supervisee, str) or not supervisee:
            raise ScenarioError(f"protected {pid}: supervisee must name the supervisee")
        device = _device(item.get("device"))
        if device.kind != "phone" or not (device.owntracks or device.osmand):
            raise ScenarioError(f"protected {pid}: device must be an OwnTracks or OsmAnd phone")
        if device.id in worn:
            raise ScenarioError(f"protected {pid}: device {device.id} is a supervisee's")
        sms = item.get("sms")
        if sms is not None and (not isinstance(sms, str) or not sms.strip()):
            raise ScenarioError(f"protected {pid}: sms must be a phone number")
        out.append(
            Protection(
                pid,
                supervisee,
                device,
                _positive(item.get("distance_m"), 500.0, f"protected {pid} distance_m"),
                int(_positive(item.get("confirm_s"), 60, f"protected {pid} confirm_s")),
                sms,
            )
        )
    return out


def parse_gathering(raw: Any) -> Gathering | None:
    """Optional roster `gathering`: {"size": 3, "radius_m": 100, "hold_s": 1200}; present
    (even empty), gatherings are watched."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ScenarioError("gathering must be an object")
    size = raw.get("size", 3)
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ScenarioError(f"gathering size must be a whole number of 2 or more, got {size!r}")
    return Gathering(
        size=size,
        radius_m=_positive(raw.get("radius_m"), 100.0, "gathering radius_m"),
        hold_s=int(_positive(raw.get("hold_s"), 1200, "gathering hold_s")),
    )


def read_roster(path: Path) -> Roster:
    doc = msgspec.json.decode(path.read_bytes())
    if not isinstance(doc, dict) or not isinstance(doc.get("supervisees"), list):
        raise ScenarioError("roster.json must be an object with a supervisees list")
    people = [parse_supervisee(s) for s in doc["supervisees"]]
    return Roster(
        timezone=str(doc.get("timezone", "Asia/Shanghai")),
        supervisees=people,
        heightened=parse_heightened(doc.get("heightened")),
        no_contact=parse_no_contact(doc.get("no_contact")),
        gathering=parse_gathering(doc.get("gathering")),
        protected=parse_protected(doc.get("protected"), people),
    )


def read_checkin_schedules(path: Path) -> dict[str, Schedule]:
    """Optional supervisee `checkins` (定位签到): the person's own check-in schedule, in the
    fields `PUT /supervisees/{id}/checkin-schedule` takes (supervision.checkin_rules)."""
    doc = msgspec.json.decode(path.read_bytes())
    out: dict[str, Schedule] = {}
    for raw in doc.get("supervisees") or [] if isinstance(doc, dict) else []:
        if isinstance(raw, dict) and raw.get("checkins") is not None:
            sid = str(raw.get("id"))
            try:
                schedule = msgspec.convert(raw["checkins"], Schedule)
                for value in (*schedule.times, schedule.waking_from, schedule.waking_to):
                    hhmm(value)
            except (msgspec.ValidationError, ValueError) as exc:
                raise ScenarioError(f"supervisee {sid}: checkins: {exc}") from None
            out[sid] = schedule
    return out


def read_pings(path: Path) -> Iterator[Ping]:
    """Each line as it arrived; a line that is not a ping record is an error with its number."""
    decoder = msgspec.json.Decoder(Ping)
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield decoder.decode(line)
                except msgspec.DecodeError as exc:
                    raise ScenarioError(f"{path.name} line {number}: {exc}") from None


# --- the centre's people: optional roster parts the engine never reads ------------------


class Officer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str
    phone: str | None = None
    email: str | None = None
    role: Literal["officer", "head"] = "officer"  # head: 所长 / 局长, told at escalation


class Office(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str
    kind: Literal["center", "city", "county", "station"]
    parent: str | None = None
    duty_phone: str | None = None
    duty_email: str | None = None
    officers: tuple[Officer, ...] = ()

    @property
    def head(self) -> str | None:
        return next((o.id for o in self.officers if o.role == "head"), None)


class OrderEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A monitoring order (使用电子定位装置决定): one of the five grounds, approved by the
    county bureau head, `from`–`to` calendar days (both included, at most three months)."""

    ground: str
    approved_by: str
    starts_on: date = msgspec.field(name="from")
    ends_on: date = msgspec.field(name="to")


class Center(msgspec.Struct, frozen=True):
    """What a roster may say besides spec 4.2, for `fencewatch load`: the office tree and
    its officers (top-level `offices`, parents before children, each with its `officers`),
    each supervisee's responsible officer (`officer`) and monitoring orders (`orders`)."""

    offices: tuple[Office, ...] = ()
    officers: dict[str, str] = {}  # supervisee → responsible officer
    orders: dict[str, tuple[OrderEntry, ...]] = {}  # supervisee → orders


def read_center(path: Path) -> Center:
    doc = msgspec.json.decode(path.read_bytes())
    if not isinstance(doc, dict):
        raise ScenarioError("roster.json must be an object with a supervisees list")
    try:
        offices = msgspec.convert(doc.get("offices") or [], tuple[Office, ...])
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"offices: {exc}") from None
    officers: dict[str, str] = {}
    orders: dict[str, tuple[OrderEntry, ...]] = {}
    for raw in doc.get("supervisees") or []:
        if not isinstance(raw, dict):
            continue  # read_roster says what is wrong with it
        sid = str(raw.get("id"))
        if raw.get("officer") is not None:
            officers[sid] = str(raw["officer"])
        try:
            mine = msgspec.convert(raw.get("orders") or [], tuple[OrderEntry, ...])
            for order in mine:
                new_order(order.ground, order.approved_by, order.starts_on, order.ends_on)
        except (msgspec.ValidationError, OrderError) as exc:
            raise ScenarioError(f"supervisee {sid} orders: {exc}") from None
        if mine:
            orders[sid] = mine
    return Center(offices, officers, orders)
