"""What a bundle holds, read through the stores the API reads: the person, their fixes,
the alerts (with timelines) whose episode meets the range, and the rules in force then.
Every read names the caller's offices, so an export shows no more than the API would."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from alerts import record
from api.routes import audit as audit_log
from api.routes.track import MAX_FIXES, MAX_RANGE
from fencewatch.timefmt import utc
from storage import history
from storage.archive import Archive
from storage.db import Conn, Row
from storage.repo import Offices
from storage.repo import leave as leave_repo
from storage.repo import orders as orders_repo
from storage.repo import people as people_repo
from storage.repo import zones as zones_repo

# An alert's bundle covers its episode and this much on either side: the approach and
# what followed.
AROUND_ALERT = timedelta(hours=1)
# Rule changes listed per kind (the newest, if ever there were more).
MAX_CHANGES = 1000


class Refused(ValueError):
    """The export cannot be made as asked; the message says why (the API answers 422)."""


class NotFound(LookupError):
    """No such person or alert in the caller's offices (the API answers 404)."""


@dataclass(frozen=True)
class Scope:
    """One alert, or one person over [start, end)."""

    supervisee: str
    start: datetime
    end: datetime
    alert: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "alert" if self.alert is not None else "supervisee",
            "alert": self.alert,
            "supervisee": self.supervisee,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
        }


@dataclass(frozen=True)
class Evidence:
    scope: Scope
    person: Row
    fixes: list[Mapping[str, Any]]  # storage.history.track
    alerts: list[dict[str, Any]]  # alert objects (alerts.record.alert_object), each with "timeline"
    zones: list[Row]  # the zones in force: jurisdiction, exclusion, home, leave destinations
    leaves: list[Row]
    orders: list[Row]
    heightened: list[Row]
    # Audit rows since the range began that changed these rules: the person's record, the
    # zones in force, bulk loads. The zones and level above are as recorded at export.
    rule_changes: list[Row]


def person_scope(supervisee: str, start: datetime, end: datetime) -> Scope:
    """The track endpoint's rules for a range."""
    if end <= start:
        raise Refused("'to' must be after 'from'")
    if end - start > MAX_RANGE:
        raise Refused(f"the range may span at most {MAX_RANGE.days} days; export in parts")
    return Scope(supervisee, start, end)


async def alert_scope(conn: Conn, offices: Offices, alert_id: int) -> Scope:
    """The alert's episode (from its earliest known start to its clearing, or to now while
    it holds) with AROUND_ALERT either side, at most MAX_RANGE long, and never past now: a
    bundle does not claim to cover time nobody has seen yet."""
    row = await record.get_alert(conn, offices, alert_id)
    if row is None:
        raise NotFound(f"alert {alert_id}")
    now = datetime.now(UTC)
    began = row["ts"]
    if (start_ms := (row["detail"] or {}).get("start")) is not None:
        began = min(began, utc(int(start_ms)))
    ended = row["cleared_at"] or (now if row["active"] else row["ts"])
    start = began - AROUND_ALERT
    end = min(max(ended, row["ts"]) + AROUND_ALERT, start + MAX_RANGE, now)
    return Scope(row["supervisee_id"], start, end, alert_id)


async def gather(conn: Conn, offices: Offices, scope: Scope, archive: Archive) -> Evidence:
    person = await people_repo.get_supervisee(conn, offices, scope.supervisee)
    if person is None:
        raise NotFound(f"supervisee {scope.supervisee!r}")
    fixes = await history.track(
        conn, archive, scope.supervisee, scope.start, scope.end, MAX_FIXES + 1
    )
    if len(fixes) > MAX_FIXES:
        raise Refused(f"more than {MAX_FIXES} fixes in this range; export a shorter range")
    if scope.alert is not None:
        row = await record.get_alert(conn, offices, scope.alert)
        rows = [row] if row is not None else []
    else:
        rows = await record.alerts_between(conn, offices, scope.supervisee, scope.start, scope.end)
    alerts = [
        {
            # Where a protected person was: in that alert's own bundle only.
            **record.alert_object(r, protected=scope.alert is not None),
            "timeline": [dict(e) for e in await record.timeline(conn, r["id"])],
        }
        for r in rows
    ]
    leaves = [
        r
        for r in await leave_repo.list_leaves(conn, scope.supervisee)
        if r["from"] < scope.end and r["to"] > scope.start
    ]
    first, last = scope.start.date(), scope.end.date()
    orders = [
        r
        for r in await orders_repo.list_orders(conn, scope.supervisee)
        if _meets(r["starts_on"], r["current_end"], first, last)
        and (r["ended_at"] is None or r["ended_at"] >= scope.start)
    ]
    # The periods that apply to the person's office: service-wide ones and those of the
    # offices above it (storage.repo.orders).
    office = person["office"]
    heightened = [
        r
        for r in await orders_repo.list_heightened(conn, [office] if office else [])
        if r["from"] < scope.end and r["to"] > scope.start
    ]
    zone_ids = [*person["jurisdiction"], *person["exclusion"]]
    if person["home"]:
        zone_ids.append(person["home"])
    zone_ids += [z for r in leaves for z in r["destinations"]]
    zones = []
    for zone_id in dict.fromkeys(zone_ids):
        zone = await zones_repo.get_zone(conn, offices, zone_id)
        if zone is not None:
            zones.append(zone)
    changes = [
        *await _changes(conn, scope, "supervisee.put", f"supervisee:{person['id']}"),
        *await _changes(conn, scope, "scenario.load"),
    ]
    for zone in zones:
        changes += await _changes(conn, scope, None, f"zone:{zone['id']}")
    changes.sort(key=lambda r: r["id"])
    return Evidence(scope, person, fixes, alerts, zones, leaves, orders, heightened, changes)


async def _changes(
    conn: Conn, scope: Scope, action: str | None, obj: str | None = None
) -> list[Row]:
    return await audit_log.query(
        conn, None, action=action, obj=obj, start=scope.start, limit=MAX_CHANGES
    )


def _meets(start: date, end: date, first: date, last: date) -> bool:
    return start <= last and end >= first
