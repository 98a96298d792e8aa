"""The rests of long upkeep between its pieces, giving way to ingest on the same database.

A piece of upkeep (storage.compaction) is followed by a rest of `rest` times the time it
took. How far behind ingest runs comes from the workers' heartbeats (ingest.leases): when
a fix waited more than BEHIND_S for its commit, the rests double, piece after piece, and
after the rest the upkeep waits on while ingest stays behind; once it has caught up they
halve back. No rest is longer than MOST_S, so the upkeep still gets on, slowly, on a box
where ingest is always behind: rows left unpacked cost disk, a late fix costs an alert.
Without a reader (or with one that has nothing to say) the rests are the plain ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

LagReader = Callable[[], Awaitable[float | None]]

# Ingest's fixes wait ~40 ms for their commit at 100,000 tags, and fix→alert's p99 is to
# stay under 300 ms (issue 19): a worst of two seconds over BEHIND_S is being held up.
BEHIND_S = 0.3
MOST_S = 5.0
POLL_S = 1.0  # the heartbeat comes every two seconds
MOST_FACTOR = 64.0


class Pace:
    def __init__(self, rest: float, lag: LagReader | None = None) -> None:
        self.rest = rest
        self.lag = lag
        self.factor = 1.0
        self.rested_s = 0.0
        self.gave_way = 0  # pieces after which ingest was behind

    async def after(self, took: float) -> None:
        """Rest after a piece that took `took` seconds."""
        behind = await self._behind()
        if behind:
            self.gave_way += 1
            self.factor = min(self.factor * 2, MOST_FACTOR)
        else:
            self.factor = max(self.factor / 2, 1.0)
        rest = min(took * self.rest * self.factor, MOST_S)
        await asyncio.sleep(rest)
        while behind and rest < MOST_S:
            await asyncio.sleep(POLL_S)
            rest += POLL_S
            behind = await self._behind()
        self.rested_s += rest

    async def _behind(self) -> bool:
        if self.lag is None:
            return False
        lag = await self.lag()
        return lag is not None and lag > BEHIND_S
