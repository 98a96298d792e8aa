"""The console's live feed (`/api/v1/feed`, api.console) over the real Mosquitto, PostgreSQL
and Redis: a tag walks out of 莲都区 and the operator's socket shows its positions and the
raised jurisdiction_exit; the officer of the person's justice station sees the same, and the
officer of another station sees none of it (while still getting their own person's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.tokens import create_token
from fencewatch.timefmt import iso
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection
from tests.live import WAIT_S, Live, running
from tests.test_live_ingest import walk_out

Message = dict[str, Any]

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {"id": "S1", "jurisdiction": [LIANDU], "devices": ["T1"]},
        {"id": "S2", "jurisdiction": [LIANDU], "devices": ["T2"]},
    ],
}
OFFICES = {"ST-A": ("紫金司法所", "S1"), "ST-B": ("万象司法所", "S2")}


class Feed:
    """One console's socket: every message it is sent, kept in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[Message] = []

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self.messages.append(json.loads(raw))

    async def until(self, wanted: Callable[[Message], bool], what: str) -> Message:
        """The first message (so far or still to come) that is `wanted`; bounded."""
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    for m in self.messages:
                        if wanted(m):
                            return m
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"{what}; the socket got: {self.messages}") from None


@asynccontextmanager
async def feed(live: Live, token: str) -> AsyncIterator[Feed]:
    url = str(live.http.base_url).replace("http://", "ws://") + "/api/v1/feed"
    async with connect(url) as ws:
        await ws.send(json.dumps({"token": token}))
        async with asyncio.timeout(WAIT_S):
            hello = json.loads(await ws.recv())
        assert hello["kind"] == "hello", hello
        f = Feed(ws)
        reader = asyncio.create_task(f.read())
        try:
            yield f
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def positions_of(person: str, ts: str | None = None) -> Callable[[Message], bool]:
    def wanted(m: Message) -> bool:
        return m.get("kind") == "positions" and any(
            p["supervisee"] == person and (ts is None or p["ts"] == ts) for p in m["items"]
        )

    return wanted


def raised_exit(person: str) -> Callable[[Message], bool]:
    def wanted(m: Message) -> bool:
        alert = m.get("alert") or {}
        return (
            m.get("kind") == "alert"
            and m.get("event") == "raised"
            and alert.get("type") == "jurisdiction_exit"
            and alert.get("supervisee") == person
        )

    return wanted


def mentions(m: Message, person: str) -> bool:
    if m.get("kind") == "positions":
        return any(p.get("supervisee") == person for p in m.get("items", []))
    return (m.get("alert") or {}).get("supervisee") == person


async def publish(live: Live, device: str, fixes: list[Message]) -> None:
    def send() -> None:
        for f in fixes:
            live.device.publish(f"em/{device}/loc", f)

    await asyncio.to_thread(send)


async def test_the_feed_shows_a_walk_out_to_its_office_only(pg_dsn, redis_url, mqtt_url) -> None:
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        for office, (name, person) in OFFICES.items():
            r = await live.http.put(
                f"/api/v1/offices/{office}", json={"name": name, "kind": "station"}
            )
            r.raise_for_status()
            r = await live.http.put(
                f"/api/v1/supervisees/{person}", json={"office": office, "jurisdiction": [LIANDU]}
            )
            r.raise_for_status()
        operator = live.http.headers["Authorization"].removeprefix("Bearer ")
        officer_a = await create_token(live.service.pool, "officer", office="ST-A")
        officer_b = await create_token(live.service.pool, "officer", office="ST-B")

        async with (
            feed(live, operator) as centre,
            feed(live, officer_a) as station_a,
            feed(live, officer_b) as station_b,
        ):
            walk = walk_out()
            await publish(live, "T1", walk)

            for f in (centre, station_a):
                message = await f.until(raised_exit("S1"), "no jurisdiction_exit raised for S1")
                alert = message["alert"]
                assert alert["device"] == "T1" and alert["status"] == "open"
                assert alert["late"] is False
                await f.until(positions_of("S1"), "no position of S1")

            # The alert went out before this fix was even sent, so once station B has S2's
            # position it has been through everything about S1 there was to filter.
            now = int(time.time() * 1000)
            home = {"v": 1, "seq": 1, "ts": now, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1]}
            await publish(live, "T2", [home])
            await station_b.until(positions_of("S2", iso(now)), "no position of S2 for ST-B")
            assert not [m for m in station_b.messages if mentions(m, "S1")]

            # And the other way round: station A never hears of S2.
            last = {**walk[-1], "seq": walk[-1]["seq"] + 1, "ts": now + 1000}
            await publish(live, "T1", [last])
            await station_a.until(positions_of("S1", iso(now + 1000)), "no later S1 position")
            assert not [m for m in station_a.messages if mentions(m, "S2")]
            await centre.until(positions_of("S2", iso(now)), "the operator sees S2 too")

        exits = await live.alerts(type="jurisdiction_exit")
        assert [(a["supervisee"], a["device"]) for a in exits] == [("S1", "T1")]


async def test_a_stop_is_not_held_up_by_open_feeds_or_stalled_requests(
    pg_dsn, redis_url, mqtt_url
) -> None:
    """An operator restarts the service while a console watches its feed and a client on a
    poor link has sent half a request: the feed is closed as a restart (1012: the console
    reconnects) and the service stops all the same, instead of waiting on them forever."""
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        operator = live.http.headers["Authorization"].removeprefix("Bearer ")
        port = live.http.base_url.port
        assert port is not None
        _, stalled = await asyncio.open_connection("127.0.0.1", port)
        stalled.write(
            b"PUT /api/v1/offices/ST-A HTTP/1.1\r\nHost: fencewatch\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        await stalled.drain()
        async with feed(live, operator) as centre:
            live.service.stop.set()
            try:
                async with asyncio.timeout(WAIT_S / 2):
                    await live.run
            except TimeoutError:
                raise AssertionError("the service did not stop") from None
            assert centre.ws.close_code == 1012, centre.ws.close_code
        stalled.close()
