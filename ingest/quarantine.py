"""What the engine could not judge (geofence.guard's faults), into the record: each message
kept in `rejected_messages` with reason `quarantined` and the error, and one `engine_fault`
alert per person while it lasts — raised at the first fault, cleared once the person's
messages are judged again — through the normal alert path (case record, officers, webhook,
console). The rest of the batch is judged and committed as usual."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from geofence.guard import Fault
from geofence.model import Verdict
from ingest.decode import Rejection
from ingest.mqtt import Inbound
from storage.db import Conn

log = logging.getLogger("fencewatch.ingest")

REASON = "quarantined"
ALERT_TYPE = "engine_fault"


async def open_faults(conn: Conn) -> dict[str, str]:
    """Person → key of their engine_fault alert still active."""
    rows = await conn.fetch(
        "SELECT supervisee_id, key FROM alerts WHERE type = $1 AND active ORDER BY id",
        ALERT_TYPE,
    )
    return {r["supervisee_id"]: r["key"] for r in rows}


class Quarantine:
    def __init__(self, faults: dict[str, str] | None = None) -> None:
        self.open = dict(faults or {})  # person → key of the active engine_fault alert

    def record(
        self,
        faults: Sequence[Fault],
        items: Sequence[Inbound],
        now: int,
        judged: Collection[str] = (),
    ) -> tuple[list[Rejection], list[Verdict]]:
        """Rejections for the faulty messages (`items[fault.index]`) and the alert verdicts:
        a raise for a person newly at fault, a clear for one at fault until now whose
        messages were `judged` without one."""
        rejections: list[Rejection] = []
        verdicts: list[Verdict] = []
        faulty = set()
        for fault in faults:
            item = items[fault.index] if fault.index is not None else None
            log.error(
                "engine raised on %s of %s (%s): quarantined",
                item.topic if item is not None else "the watchdog",
                fault.supervisee or fault.device,
                fault.error,
            )
            if item is not None:
                rejections.append(Rejection(item.topic, item.payload, REASON, fault.error))
            if not fault.supervisee or fault.supervisee in faulty:
                continue
            faulty.add(fault.supervisee)
            if fault.supervisee in self.open:
                continue
            key = f"{ALERT_TYPE}:{fault.supervisee}:{now}"
            self.open[fault.supervisee] = key
            detail = {
                "error": fault.error,
                "source": item.topic if item is not None else "watchdog",
                "note": "this person's data could not be judged; the input is kept as"
                " quarantined (rejected_messages) until the rules are corrected",
            }
            ts = item.at if item is not None else now
            verdicts.append(
                Verdict("raise", ALERT_TYPE, fault.supervisee, fault.device, ts, key, False, detail)
            )
        if self.open:
            for person in [p for p in self.open if p in judged and p not in faulty]:
                key = self.open.pop(person)
                verdicts.append(Verdict("clear", ALERT_TYPE, person, "", now, key))
        return rejections, verdicts
