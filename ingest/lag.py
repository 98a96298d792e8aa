"""How far behind this worker's ingest runs: the longest any fix waited between its
message's arrival and its commit, since the last heartbeat. The heartbeat publishes it
(ingest.leases) for the upkeep sharing the database, which gives way while ingest is
behind (storage.compaction): an hour of 100,000 tags packed at its own pace took half a
core of PostgreSQL and put ingest's commits seconds behind (docs/benchmarks.md)."""

from __future__ import annotations

import time


class Lag:
    def __init__(self) -> None:
        self._worst_ms = 0

    def committed(self, arrived_ms: int) -> None:
        """A batch whose first message arrived at `arrived_ms` (epoch ms) is committed."""
        self._worst_ms = max(self._worst_ms, int(time.time() * 1000) - arrived_ms)

    def take(self) -> int:
        """The worst wait in ms since the last take."""
        worst, self._worst_ms = self._worst_ms, 0
        return worst


LAG = Lag()  # the process's: its shards' loops report, its heartbeat publishes
