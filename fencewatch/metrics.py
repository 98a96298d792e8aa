"""Prometheus metrics, defined once here and served at /metrics (spec 4.3)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FIXES_RECEIVED = Counter(
    "fencewatch_fixes_received", "Position fixes received from devices (before dedup)"
)
FIXES_STORED = Counter("fencewatch_fixes_stored", "Fixes committed to the database, once each")
FIXES_REJECTED = Counter(
    "fencewatch_fixes_rejected", "Device messages rejected, by reason", ["reason"]
)
MESSAGES_IGNORED = Counter(
    "fencewatch_messages_ignored",
    "Valid device messages with nothing to judge or keep (OwnTracks waypoints, cards…), by reason",
    ["reason"],
)
OSMAND_REQUESTS = Counter(
    "fencewatch_osmand_requests",
    "OsmAnd (Traccar Client) requests over HTTP, by the status they were answered with",
    ["status"],
)
JT808_CONNECTIONS = Gauge(
    "fencewatch_jt808_connections", "JT/T 808 terminals' TCP connections open at the gateway"
)
JT808_FIXES = Counter(
    "fencewatch_jt808_fixes",
    "Fixes from JT/T 808 terminals the broker took and the terminal was told so (0x8001)",
)
JT808_DROPPED = Counter(
    "fencewatch_jt808_dropped",
    "What the JT/T 808 gateway refused or cut off, by reason (bad_checksum, oversized,"
    " unauthenticated, idle, auth_timeout, too_many_connections, unknown_terminal, …;"
    " all in docs/security.md)",
    ["reason"],
)
ALERTS_RAISED = Counter("fencewatch_alerts_raised", "Alerts raised, by type", ["type"])
INGEST_BATCH_SECONDS = Histogram(
    "fencewatch_ingest_batch_seconds", "Time to judge and commit one ingest batch"
)
SHARDS_HELD = Gauge("fencewatch_shards_held", "Engine shards this process judges (leased)")
INGEST_BACKLOG = Gauge("fencewatch_ingest_backlog", "Messages received but not yet committed")
BROKER_DROPPED = Gauge(
    "fencewatch_broker_dropped_messages",
    "Messages the MQTT broker says it dropped since it started (full queues: lost)",
)
BROKER_DISCONNECTS = Counter(
    "fencewatch_broker_disconnects",
    "Ingest sessions' connections lost without being closed by fencewatch",
)
BROKER_SESSIONS_LOST = Counter(
    "fencewatch_broker_sessions_lost",
    "Reconnections on which the broker no longer had the shard's persistent session"
    " (what was queued in it is gone)",
)
NOTIFICATIONS = Counter(
    "fencewatch_notifications",
    "Notification delivery attempts, by channel and outcome",
    ["channel", "outcome"],
)
