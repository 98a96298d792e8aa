"""Epoch milliseconds ⇄ ISO-8601 UTC, the one way times are written out."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
