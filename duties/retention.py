"""Retention: location data of people whose supervision ended long ago is deleted.

A person's fixes and device events are purged once their supervision has ended (status
`released`, `term_end` set) more than the retention period ago (`Settings.retention_days`,
FENCEWATCH_RETENTION_DAYS: default 1826 days, five years; docs/security.md says why), and
only those older than that period. The case record — alerts, their handling and
dispositions, leave, monitoring orders — is the person's file (一人一档) and stays. Rejected
device messages, which may hold positions too, are deleted by age alone after the same
period.

Fixes are purged from both storage tiers (storage.history.purge): PostgreSQL, and the
archive's Parquet files, each written again without them and checked before the ledger
takes the new file and the old one is deleted.

Every run is recorded in the audit log: one `retention.purge` row per person purged,
with counts, in the same transaction as the delete, and one `retention.run` row with the
totals. `purge` is safe to run from several processes at once: an advisory lock lets one
do the work and the others skip.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from fencewatch.config import MIN_RETENTION_DAYS
from ingest.forget import UNREACHABLE, forget
from storage import history
from storage.archive import Archive
from storage.archiving import LOCK_ID as ARCHIVE_LOCK_ID
from storage.db import FAILED as DB_FAILED
from storage.repo import access as access_repo
from storage.repo import proximity as proximity_repo

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("fencewatch.retention")

ACTOR = "fencewatch retention"
EVERY_S = 86_400.0
FIRST_AFTER_S = 300.0  # after start, once the service has settled
RETRY_S = 900.0  # after a failed run (database away)
_LOCK_ID = 0x6677_7274  # "fwrt"


async def purge(
    pool: asyncpg.Pool,
    now: datetime,
    days: int,
    *,
    archive: Archive,
    dry_run: bool = False,
    redis: Redis | None = None,
) -> dict[str, Any]:
    """Delete what is past retention at `now`; returns what was (or, with `dry_run`,
    would be) deleted: totals, per person, and the released people without a term end
    (kept: when their supervision ended is unknown). `redis` is the service's, where the
    protected persons purged were seen too (ingest.forget)."""
    if days < MIN_RETENTION_DAYS:
        raise ValueError(f"days must be at least {MIN_RETENTION_DAYS}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - timedelta(days=days)
    # A term ends at the end of its last day, local time; a person is due only when that
    # whole day lies before the cutoff's day, which errs by at most a day on keeping.
    ended_before = cutoff.astimezone(UTC).date()
    result: dict[str, Any] = {
        "cutoff": cutoff.astimezone(UTC).isoformat(),
        "days": days,
        "dry_run": dry_run,
        "supervisees": 0,
        "fixes": 0,
        "archived_fixes": 0,
        "device_events": 0,
        "rejected_messages": 0,
        "purged": {},
        "released_without_term_end": [],
    }
    async with pool.acquire() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
            result["skipped"] = "another purge is running"
            return result
        try:
            # No archive move meanwhile: a file being moved cannot also be purged.
            await lock_conn.execute("SELECT pg_advisory_lock($1)", ARCHIVE_LOCK_ID)
            try:
                await _purge(pool, archive, result, cutoff, ended_before, dry_run, redis)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", ARCHIVE_LOCK_ID)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return result


async def _purge(
    pool: asyncpg.Pool,
    archive: Archive,
    result: dict[str, Any],
    cutoff: datetime,
    ended_before: date,
    dry_run: bool,
    redis: Redis | None,
) -> None:
    due = await pool.fetch(
        "SELECT id, term_end FROM supervisees"
        " WHERE status = 'released' AND term_end IS NOT NULL AND term_end < $1 ORDER BY id",
        ended_before,
    )
    result["released_without_term_end"] = [
        r["id"]
        for r in await pool.fetch(
            "SELECT id FROM supervisees WHERE status = 'released' AND term_end IS NULL ORDER BY id"
        )
    ]
    for person in due:
        sid = person["id"]
        async with pool.acquire() as conn, conn.transaction():
            counts, stale = await _purge_person(conn, archive, sid, cutoff, dry_run)
            if any(counts.values()):
                if not dry_run:
                    detail = {
                        **counts,
                        "term_end": person["term_end"].isoformat(),
                        "cutoff": result["cutoff"],
                        "days": result["days"],
                    }
                    await access_repo.audit(
                        conn, ACTOR, None, "retention.purge", f"supervisee:{sid}", detail
                    )
                result["purged"][sid] = counts
                result["supervisees"] += 1
                result["fixes"] += counts["fixes"]
                result["archived_fixes"] += counts["archived_fixes"]
                result["device_events"] += counts["device_events"]
        await history.discard(archive, stale)
    await _purge_protected(pool, result, dry_run, redis)
    async with pool.acquire() as conn, conn.transaction():
        if dry_run:
            result["rejected_messages"] = await conn.fetchval(
                "SELECT count(*) FROM rejected_messages WHERE received_at < $1", cutoff
            )
            return
        result["rejected_messages"] = _count(
            await conn.execute("DELETE FROM rejected_messages WHERE received_at < $1", cutoff)
        )
        summary = {k: v for k, v in result.items() if k not in ("purged", "dry_run")}
        summary["released_without_term_end"] = summary["released_without_term_end"][:100]
        await access_repo.audit(conn, ACTOR, None, "retention.run", "retention", summary)


async def _purge_protected(
    pool: asyncpg.Pool, result: dict[str, Any], dry_run: bool, redis: Redis | None
) -> None:
    """Protected persons whose supervisee's supervision has ended go at once, not after the
    retention period: where they were is a third party's data whose only purpose, the
    order, is over (storage.repo.proximity.purge_protected, ingest.forget;
    docs/security.md). Releasing a person through the API purges them then; this catches a
    release recorded otherwise. With Redis unreachable, the person's protections are left
    for the next run."""
    ended = await pool.fetch(
        "SELECT DISTINCT p.supervisee_id FROM protected_persons p"
        " JOIN supervisees s ON s.id = p.supervisee_id WHERE s.status = 'released'"
        " ORDER BY 1"
    )
    result["protected_persons"] = 0
    for row in ended:
        sid = row["supervisee_id"]
        if dry_run:
            result["protected_persons"] += await pool.fetchval(
                "SELECT count(*) FROM protected_persons WHERE supervisee_id = $1", sid
            )
            continue
        try:
            async with pool.acquire() as conn, conn.transaction():
                purged = await proximity_repo.purge_protected_of(conn, sid)
                for protection, alerts in purged.items():
                    await access_repo.audit(
                        conn,
                        ACTOR,
                        None,
                        "retention.protected",
                        f"supervisee:{sid}",
                        {"protected": protection, "alerts": alerts},
                    )
                if redis is not None:
                    await forget(redis, purged)
        except UNREACHABLE as exc:
            log.error("protections from %s not purged: Redis unreachable (%s)", sid, exc)
            continue
        result["protected_persons"] += len(purged)


async def _purge_person(
    conn: Any, archive: Archive, supervisee: str, cutoff: datetime, dry_run: bool
) -> tuple[dict[str, int], list[str]]:
    """The person's counts — fixes (of both tiers), archived_fixes (of them, the
    archive's), device_events — and the archive files to delete once committed."""
    fixes, stale = await history.purge(conn, archive, supervisee, cutoff, dry_run=dry_run)
    where = "FROM device_events WHERE supervisee_id = $1 AND ts < $2"
    if dry_run:
        events = int(await conn.fetchval(f"SELECT count(*) {where}", supervisee, cutoff))
    else:
        events = _count(await conn.execute(f"DELETE {where}", supervisee, cutoff))
    counts = {
        "fixes": fixes["fixes"] + fixes["archived_fixes"],
        "archived_fixes": fixes["archived_fixes"],
        "device_events": events,
    }
    return counts, stale


def _count(status: str) -> int:
    """The row count of a command status such as 'DELETE 42'."""
    return int(status.rsplit(" ", 1)[-1])


async def job(
    pool: asyncpg.Pool,
    days: int,
    archive: Archive,
    *,
    every_s: float = EVERY_S,
    first_after_s: float = FIRST_AFTER_S,
    retry_s: float = RETRY_S,
    redis: Redis | None = None,
) -> None:
    """The service's daily purge. A failed run (database away) is logged and retried
    later; it never stops the service."""
    log.info("retention: location data is kept %d days after supervision ends", days)
    delay = first_after_s
    while True:
        await asyncio.sleep(delay)
        try:
            done = await purge(pool, datetime.now(UTC), days, archive=archive, redis=redis)
        except DB_FAILED as exc:
            log.error("retention purge failed (%s); retrying in %.0f s", exc, retry_s)
            delay = retry_s
            continue
        delay = every_s
        if "skipped" in done:
            log.info("retention purge skipped: %s", done["skipped"])
        elif done["supervisees"] or done["rejected_messages"]:
            log.info(
                "retention purge: %d fixes and %d device events of %d people,"
                " %d rejected messages (before %s)",
                done["fixes"],
                done["device_events"],
                done["supervisees"],
                done["rejected_messages"],
                done["cutoff"],
            )
        if done["released_without_term_end"]:
            log.warning(
                "retention: %d released people have no term_end, so their data is kept: %s",
                len(done["released_without_term_end"]),
                ", ".join(done["released_without_term_end"][:20]),
            )
