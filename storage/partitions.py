"""Daily partitions of the fixes table, created ahead of time (a scheduled job and every
start call `ensure`); fixes outside them land in the default partition, never lost. A day
is the unit the archive moves (storage.archiving): a partition past the archive's age is
detached and dropped whole, which costs PostgreSQL nothing like deleting its rows would.
Monthly partitions of earlier versions stay as they are until their month is archived."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg

from storage.db import Conn


async def ensure(conn: Conn, today: date | None = None, ahead: int = 7) -> list[str]:
    """Create the partitions from yesterday to `ahead` days on; returns those created."""
    today = today or datetime.now(UTC).date()
    created = []
    async with conn.transaction():
        # Several processes start at once (ingest workers): one creates, the rest then see.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('fencewatch:partitions'))")
        for offset in range(-1, ahead + 1):
            start = today + timedelta(days=offset)
            name = f"fixes_{start:%Y_%m_%d}"
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
            if exists:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(
                        f"CREATE TABLE {name} PARTITION OF fixes FOR VALUES"
                        f" FROM ('{start.isoformat()} 00:00+00')"
                        f" TO ('{start + timedelta(days=1)} 00:00+00')"
                    )
                created.append(name)
            except asyncpg.exceptions.InvalidObjectDefinitionError:
                # An earlier version's monthly partition holds this day.
                continue
            except asyncpg.exceptions.CheckViolationError:
                # The default partition already holds fixes of that day (a device whose
                # clock ran ahead); they stay there, still queryable through `fixes`.
                continue
    return created
