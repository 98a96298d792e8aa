"""Faults on the real services (issue 5): whatever dies, every fix a device sent with QoS 1
is stored exactly once and every breach raises exactly one alert.

Each test prints what was sent, stored and alerted (docs/reliability.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.faults import Fleet, Stack, needs_private_stack, until

pytestmark = needs_private_stack

DEVICES, FIXES, CROSSING = 20, 120, 5


async def settle(stack: Stack, fleet: Fleet, label: str) -> None:
    sent = len(fleet.messages)

    async def all_stored() -> bool:
        return await stack.count("SELECT count(*) FROM fixes") >= sent

    await until(all_stored, f"{label}: not every fix was stored")
    stored = await stack.count("SELECT count(*) FROM fixes")
    distinct = await stack.count("SELECT count(DISTINCT (device_id, seq)) FROM fixes")

    async def alerts_settled() -> bool:
        return (
            await stack.count("SELECT count(*) FROM alerts WHERE type = 'jurisdiction_exit'")
            >= CROSSING
        )

    await until(alerts_settled, f"{label}: a breach raised no alert")
    await asyncio.sleep(1)  # a duplicate would show up after the last fix, not before
    alerts = await stack.count("SELECT count(*) FROM alerts WHERE type = 'jurisdiction_exit'")
    per_device = await stack.count(
        "SELECT coalesce(max(n), 0) FROM"
        " (SELECT count(*) n FROM alerts GROUP BY supervisee_id, type) x"
    )
    print(f"{label}: sent {sent}, stored {stored} ({distinct} distinct), alerts {alerts}")
    assert stored == distinct == sent
    assert alerts == CROSSING and per_device == 1


async def _fault_mid_stream(stack: Stack, fault: Callable[[], None]) -> Fleet:
    """Publish the fleet at full rate and apply `fault` a third of the way through."""
    fleet = Fleet(DEVICES, FIXES, CROSSING)
    await fleet.load(stack)
    stack.start_service()
    publisher = fleet.publish(stack)

    async def some_stored() -> bool:
        return await stack.count("SELECT count(*) FROM fixes") >= len(fleet.messages) // 3

    await until(some_stored, "nothing stored before the fault")
    fault()
    publisher.join()
    return fleet


async def test_kill_9_while_the_fleet_publishes(stack: Stack) -> None:
    fleet = await _fault_mid_stream(stack, stack.kill_service)
    stack.start_service()
    await settle(stack, fleet, "kill -9 of the service")


async def test_postgresql_restarted_mid_stream(stack: Stack) -> None:
    fleet = await _fault_mid_stream(stack, stack.pg.restart)
    await settle(stack, fleet, "PostgreSQL restarted")


async def test_redis_flushed_and_restarted(stack: Stack) -> None:
    fleet = Fleet(DEVICES, FIXES, CROSSING)
    await fleet.load(stack)
    stack.start_service()
    half = len(fleet.messages) // 2
    fleet.publish(stack, fleet.messages[:half]).join()
    stack.restart_redis()  # nothing on disk: a restart is a flush
    fleet.publish(stack, fleet.messages[half:]).join()
    await settle(stack, fleet, "Redis flushed and restarted")


async def test_redis_down_longer_than_a_lease_mid_stream(stack: Stack) -> None:
    # Ingest lets its shard go while it cannot renew the lease and takes it again after.
    fleet = await _fault_mid_stream(stack, lambda: stack.restart_redis(down_s=15))
    await settle(stack, fleet, "Redis down for 15 s")


async def test_broker_restarted_with_a_backlog(stack: Stack) -> None:
    fleet = Fleet(DEVICES, FIXES, CROSSING)
    await fleet.load(stack)
    stack.start_service()
    half = len(fleet.messages) // 2
    fleet.publish(stack, fleet.messages[:half]).join()
    # Messages queue in the broker for the stopped service, then the broker restarts.
    stack.stop_service()
    fleet.publish(stack, fleet.messages[half:]).join()
    stack.restart_broker()
    stack.start_service()
    await settle(stack, fleet, "broker restarted with a backlog")


async def test_sigterm_with_a_request_stalled_mid_body(stack: Stack) -> None:
    """An operator's restart while a client on a poor link has sent half a request: the
    service stops, rather than ignoring SIGTERM until the client gives up."""
    stack.start_service()
    service = stack.services[0]
    _, stalled = await asyncio.open_connection("127.0.0.1", stack.ports[0])
    stalled.write(
        b"PUT /api/v1/offices/K1 HTTP/1.1\r\nHost: fencewatch\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    await stalled.drain()
    await asyncio.to_thread(stack.stop_service)  # a TimeoutExpired if it does not stop
    assert service.returncode == 0
    stalled.close()
