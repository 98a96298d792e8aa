"""Broker failure without loss (docs/reliability.md): a 3-node NATS cluster whose MQTT
sessions and QoS 1 messages live in JetStream streams replicated on all three nodes.
`fencewatch serve` (two shards, so two persistent sessions) connects to node 0, the devices
to node 1, each knowing the others. While fixes stream in, node 0 — the service's — is
killed with `kill -9`; it comes back, and then node 1 — the devices' — is killed. Every fix
acknowledged to a device must be stored exactly once, and both shards' sessions must carry
on from another node with what was queued in them.

Mosquitto cannot give this promise: it keeps acknowledged messages in memory until its
next autosave, and a single broker has no other node to go on from.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from fencewatch.embedded import free_port
from tests import serve
from tests.faults import Fleet, until
from tests.live import load_roster
from tests.nats_cluster import NatsCluster, nats_binary

pytestmark = pytest.mark.skipif(
    nats_binary() is None, reason="no nats-server: the broker-failure test runs a NATS cluster"
)

log = logging.getLogger(__name__)

DEVICES, FIXES_EACH = 10, 120  # 1,200 fixes
# A message delivered to the service and not acknowledged when its node died is delivered
# again after this (NATS's default is 30 s; shorter here to keep the test short).
ACK_WAIT = "10s"


async def stored(dsn: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT device_id, seq FROM fixes")
    finally:
        await conn.close()
    return [(r["device_id"], r["seq"]) for r in rows]


async def stream_through(
    devices: serve.Devices, messages: list, kill: int, cluster: NatsCluster, dsn: str
) -> float:
    """Publish `messages`, killing node `kill` half-way; wait until every one is
    acknowledged and every acknowledged one stored. Seconds from the kill until then."""
    half, total = len(messages) // 2, len(devices.acked) + len(messages)
    await asyncio.to_thread(devices.publish, messages[:half])
    killed = time.monotonic()
    await asyncio.to_thread(cluster.kill, kill)
    await asyncio.to_thread(devices.publish, messages[half:])
    await asyncio.to_thread(devices.wait_acked, total)

    async def all_acked_stored() -> bool:
        acked = {(topic.split("/")[1], seq) for topic, seq in devices.acked}
        return acked <= set(await stored(dsn))

    await until(all_acked_stored, "fixes acknowledged to devices were not stored")
    return time.monotonic() - killed


async def test_broker_nodes_killed_mid_stream_lose_no_acknowledged_fix(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    fleet = Fleet(DEVICES, FIXES_EACH, crossing=0)
    await load_roster(pg_dsn, tmp_path, fleet.roster())
    cluster = NatsCluster(tmp_path / "nats", ack_wait=ACK_WAIT)
    http = free_port()
    services: list[subprocess.Popen[bytes]] = []
    devices = None
    try:
        await asyncio.to_thread(cluster.start)  # stopped below even if it never came up
        env = {
            "FENCEWATCH_DATABASE_URL": pg_dsn,
            "FENCEWATCH_REDIS_URL": redis_url,
            "FENCEWATCH_MQTT_URL": cluster.url(0, 1, 2),
            "FENCEWATCH_MQTT_CLIENT_ID": f"fw-{uuid.uuid4().hex[:8]}",
            "FENCEWATCH_SHARDS": "2",
            "FENCEWATCH_DATA_DIR": str(tmp_path / "var"),
            "FENCEWATCH_OSMAND": "off",
            "FENCEWATCH_JT808": "off",
        }
        services.append(await asyncio.to_thread(serve.start, env, http, tmp_path / "serve.log"))

        async def both_shards_held() -> bool:
            return serve.metric(http, "fencewatch_shards_held") == 2

        await until(both_shards_held, "the service did not take its two shards")
        devices = await asyncio.to_thread(
            serve.Devices, lambda d: cluster.url(1, 2, 0), fleet.devices
        )
        mqtt_streams = {
            name: copies
            for name, copies in cluster.copies(0).items()
            if name.startswith("$MQTT_")  # sessions, messages, retained messages
        }
        assert "$MQTT_msgs" in mqtt_streams and set(mqtt_streams.values()) == {3}
        third = len(fleet.messages) // 3
        # The service's node dies; its sessions go on from node 1 or 2.
        first = await stream_through(devices, fleet.messages[: 2 * third], 0, cluster, pg_dsn)
        await asyncio.to_thread(cluster.restart, 0)
        # The devices' node dies; they resend what was not acknowledged to node 2.
        second = await stream_through(devices, fleet.messages[2 * third :], 1, cluster, pg_dsn)

        rows = await stored(pg_dsn)
        assert len(devices.acked) == len(fleet.messages)  # nothing refused for good
        assert len(rows) == len(set(rows)) == len(fleet.messages)  # each stored once
        assert serve.metric(http, "fencewatch_broker_sessions_lost") == 0
        assert serve.metric(http, "fencewatch_shards_held") == 2
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{http}/healthz")).status_code == 200
        log.info(
            "%d fixes from %d devices, all stored once; all stored %.1f s after the"
            " service's node died, %.1f s after the devices' node died",
            len(rows),
            DEVICES,
            first,
            second,
        )
    finally:
        if devices is not None:
            devices.close()
        serve.stop(services)
        cluster.stop()
