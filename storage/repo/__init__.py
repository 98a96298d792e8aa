"""The SQL of the API and the loader, one function a statement, one module an entity as in
api/routes/: access (tokens, scope, audit), offices, zones, people (supervisees, devices,
assignments), leave, orders (and heightened periods), tracks. Alerts have their own
record: alerts.record.

Rows come back with the API's field names (`supervisee`, not `supervisee_id`) so callers
turn them into response models without renaming. Functions that read personal data take
`offices`: the caller's office subtree, or None for an unscoped (centre-wide) caller; a
row outside the subtree is treated as absent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

Offices: TypeAlias = Sequence[str] | None

# Keeps a read to the caller's `offices` ($1), for queries that name the person `s`.
IN_SCOPE = "($1::text[] IS NULL OR s.office_id = ANY($1::text[]))"
