"""Monthly partitions of the fixes table, created ahead of time (a scheduled job and every
start call `ensure`); fixes outside them land in the default partition, never lost."""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg

from storage.db import Conn


def _month(d: date, offset: int) -> date:
    index = d.year * 12 + d.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


async def ensure(conn: Conn, today: date | None = None, ahead: int = 2) -> list[str]:
    """Create the partitions from last month to `ahead` months on; returns those created."""
    today = today or datetime.now(UTC).date()
    created = []
    async with conn.transaction():
        # Several processes start at once (ingest workers): one creates, the rest then see.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('fencewatch:partitions'))")
        for offset in range(-1, ahead + 1):
            start, end = _month(today, offset), _month(today, offset + 1)
            name = f"fixes_{start:%Y_%m}"
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
            if exists:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(
                        f"CREATE TABLE {name} PARTITION OF fixes"
                        f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
                created.append(name)
            except asyncpg.exceptions.CheckViolationError:
                # The default partition already holds fixes of that month (a device whose
                # clock ran ahead); they stay there, still queryable through `fixes`.
                continue
    return created
