"""The rules in force: who wears which device, and each person's zones, leave and policy,
compiled once so judging a fix is lookups and vectorized geometry."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec
import numpy as np
import shapely
from shapely.geometry import shape

from geofence.area import Area
from geofence.model import Leave, Place, Roster, Supervisee, ZoneDef
from geofence.policy import DEFAULT_BOOK, Policy, PolicyBook
from geofence.schedule import LocalClock, is_active


class RuleSet:
    def __init__(
        self,
        roster: Roster,
        zones: Iterable[ZoneDef],
        book: PolicyBook = DEFAULT_BOOK,
    ) -> None:
        self.timezone = roster.timezone
        self.clock = LocalClock(roster.timezone)
        self.book = book
        self.zones = {z.id: z for z in zones}
        self.supervisees: dict[str, Supervisee] = {}
        self.device_owner: dict[str, str] = {}
        self.device_kind: dict[str, str] = {}
        self.owntracks: dict[str, str] = {}
        self.osmand: dict[str, str] = {}  # OsmAnd id → device
        self.problems: list[str] = []
        self._areas: dict[tuple[str, ...], Area] = {}
        self._places: dict[tuple[float, float, float], Area] = {}
        self._gaps: dict[tuple[tuple[str, ...], tuple[str, ...]], float] = {}
        # One policy object per (level, device kind, heightened period), shared by every
        # device it applies to: not one per device.
        self._policies: dict[tuple[str, str, int | None], Policy] = {}
        self.heightened = sorted(roster.heightened, key=lambda h: h.start)
        for person in roster.supervisees:
            self._add(person)
        self.no_contact = roster.no_contact
        self.gathering = roster.gathering
        # Protected persons' phones: known to ingest, judged by no engine (geofence.together).
        self.protected = roster.protected
        self.protected_devices = {p.device.id: p for p in roster.protected}
        self.protected_owntracks = {
            p.device.owntracks: p.device.id for p in roster.protected if p.device.owntracks
        }
        self.protected_osmand = {
            p.device.osmand: p.device.id for p in roster.protected if p.device.osmand
        }
        for p in roster.protected:
            if p.supervisee not in self.supervisees:
                self.problems.append(f"protected {p.id}: unknown supervisee {p.supervisee}")
        for order in roster.no_contact:
            unknown = sorted(p for p in order.people if p not in self.supervisees)
            if unknown:
                self.problems.append(f"no-contact order {order.id}: unknown supervisees {unknown}")
        # Who wears two or more devices: only their devices are compared with each other
        # (device separation, lost contact while another device reports).
        worn = Counter(self.device_owner.values())
        self.paired = frozenset(p for p, n in worn.items() if n > 1)

    def _add(self, person: Supervisee) -> None:
        workplace = person.workplace if isinstance(person.workplace, str) else None
        missing = [
            z
            for z in (*person.jurisdiction, *person.exclusion, person.home, workplace)
            if z is not None and z not in self.zones
        ]
        missing += [z for leave in person.leaves for z in leave.destinations if z not in self.zones]
        if missing:
            # The rest of the person's rules still apply: a typo must not switch them off.
            self.problems.append(f"supervisee {person.id}: unknown zones {sorted(set(missing))}")
            known = self.zones.__contains__
            person = Supervisee(
                id=person.id,
                jurisdiction=tuple(filter(known, person.jurisdiction)),
                exclusion=tuple(filter(known, person.exclusion)),
                home=person.home if person.home is None or known(person.home) else None,
                workplace=None if workplace in missing else person.workplace,
                devices=person.devices,
                leaves=tuple(
                    Leave(
                        start=lv.start,
                        end=lv.end,
                        destinations=tuple(filter(known, lv.destinations)),
                        id=lv.id,
                        returned_at=lv.returned_at,
                    )
                    for lv in person.leaves
                ),
                level=person.level,
                name=person.name,
                office=person.office,
            )
        self.supervisees[person.id] = person
        for device in person.devices:
            owner = self.device_owner.get(device.id)
            if owner is not None and owner != person.id:
                self.problems.append(f"device {device.id} is on both {owner} and {person.id}")
                continue
            self.device_owner[device.id] = person.id
            self.device_kind[device.id] = device.kind
            if device.owntracks:
                self.owntracks[device.owntracks] = device.id
            if device.osmand:
                self.osmand[device.osmand] = device.id

    def device_id(self, device: str) -> str:
        """The roster's own string for `device` (equal to it), for what is kept per device:
        one string a device instead of one more from the message that first named it."""
        person = self.supervisees.get(self.device_owner.get(device, ""))
        for ref in person.devices if person is not None else ():
            if ref.id == device:
                return ref.id
        return device

    def policy(self, device: str, ts: int | None = None) -> Policy:
        """The device's policy, made stricter during a heightened period covering `ts` and
        the wearer's office."""
        period = None
        if ts is not None:
            for index, h in enumerate(self.heightened):
                if h.start <= ts < h.end and (
                    not h.offices or self.supervisees[self.device_owner[device]].office in h.offices
                ):
                    period = index
                    break
        level = self.supervisees[self.device_owner[device]].level
        key = (level, self.device_kind.get(device, "tag"), period)
        found = self._policies.get(key)
        if found is None:
            found = self.book.for_device(level, key[1])
            if period is not None:
                found = msgspec.structs.replace(found, **self.heightened[period].policy)
            self._policies[key] = found
        return found

    def area(self, zone_ids: tuple[str, ...]) -> Area:
        """The union of these zones (cached): neighbouring districts share borders, so a fix
        straddling two allowed districts is inside their union though inside neither."""
        found = self._areas.get(zone_ids)
        if found is None:
            if len(zone_ids) == 1 and self.zones[zone_ids[0]].radius_m is not None:
                zone = self.zones[zone_ids[0]]
                lon, lat = zone.geometry["coordinates"][:2]
                found = Area.circle(float(lat), float(lon), float(zone.radius_m or 0.0))
            else:
                found = Area(shapely.union_all([self._polygon(z) for z in zone_ids]))
            self._areas[zone_ids] = found
        return found

    def protection_of(self, topic_device: str, protocol: str) -> str | None:
        """The protected person's device a tag's or OwnTracks topic's device part names."""
        if protocol == "owntracks":
            return self.protected_owntracks.get(topic_device)
        return topic_device if topic_device in self.protected_devices else None

    def at_home_or_work(self, supervisee: str, lat: float, lon: float, radius: float) -> bool:
        """Whether an error circle may lie in the person's home zone or workplace (is not
        surely outside both): there, being near others is no gathering."""
        person = self.supervisees.get(supervisee)
        if person is None:
            return False
        places = [self.area((person.home,))] if person.home is not None else []
        if isinstance(person.workplace, str):
            places.append(self.area((person.workplace,)))
        elif person.workplace is not None:
            places.append(self._place(person.workplace))
        at = np.array([lat]), np.array([lon]), np.array([radius])
        return any(area.classify(*at)[0] != -2 for area in places)

    def _place(self, place: Place) -> Area:
        key = (place.lat, place.lon, place.radius_m)
        found = self._places.get(key)
        if found is None:
            found = self._places[key] = Area.circle(place.lat, place.lon, place.radius_m)
        return found

    def trip_s(self, person: Supervisee, leave: Leave, policy: Policy) -> int:
        """How long the road between the person's jurisdiction and the leave's destinations
        plausibly takes (geofence.stages.jurisdiction): the straight gap between them, made
        a road by `trip_detour`, at `trip_speed_mps`, plus `trip_margin_s`."""
        key = (person.jurisdiction, leave.destinations)
        gap = self._gaps.get(key)
        if gap is None:
            gap = 0.0
            if person.jurisdiction and leave.destinations:
                home = self.area(person.jurisdiction)
                away = shapely.union_all([self._polygon(z) for z in leave.destinations])
                gap = float(home.metric.distance(home.to_metric(away)))
            self._gaps[key] = gap
        trip = gap * policy.trip_detour / policy.trip_speed_mps + policy.trip_margin_s
        return int(min(trip, policy.leave_travel_s))

    def _polygon(self, zone_id: str) -> shapely.Geometry:
        zone = self.zones[zone_id]
        geom = shape(zone.geometry)
        if zone.radius_m is not None:
            # Union with polygons: draw the circle in degrees scaled at its latitude.
            circle = Area.circle(geom.y, geom.x, zone.radius_m)
            return shapely.transform(
                circle.metric, lambda c: c / [circle.kx, circle.ky] + [circle.lon0, circle.lat0]
            )
        return geom

    def active_leave(self, person: Supervisee, ts: int) -> Leave | None:
        for leave in person.leaves:
            if (
                leave.start <= ts < leave.end
                and (leave.returned_at is None or ts < leave.returned_at)
                and (
                    not leave.schedule or is_active(leave.schedule, *self.clock.weekday_minute(ts))
                )
            ):
                return leave
        return None

    def last_leave_end(self, person: Supervisee, ts: int) -> Leave | None:
        """The leave that most recently ended before `ts` (for 'still away after leave')."""
        ended = [lv for lv in person.leaves if lv.end <= ts and not lv.schedule]
        return max(ended, key=lambda lv: lv.end) if ended else None

    def zone_active(self, zone: ZoneDef, ts: int) -> bool:
        if not zone.schedule:
            return True
        weekday, minute = self.clock.weekday_minute(ts)
        return is_active(zone.schedule, weekday, minute)
