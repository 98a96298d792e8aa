"""The simulated JT/T 808 terminal (simulators.jt808) against a small platform built in
the test from the same codec: it registers, authenticates and reports where its track
puts it; fixes the platform never acknowledged come back in a blind-area upload after a
reconnect, each exactly once acknowledged; it answers a location query, a text message
and a new report interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from ingest.jt808 import commands, messages
from ingest.jt808.frame import Frame, FrameReader, encode, to
from simulators.fleet import DeviceClock
from simulators.jt808 import ALARM_EMERGENCY, Terminal, line

PHONE = "13912345678"
CODE = "sesame-13912345678"
WAIT_S = 20.0  # a ceiling for conditions to come true, not a measured time


class Platform:
    """Just enough of a JT/T 808 platform: it registers one terminal, checks its code,
    keeps what it reports, acknowledges (unless told to hold its acknowledgements) and
    sends it commands."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, messages.Location]] = []  # (message id, location)
        self.answers: list[messages.TerminalResponse] = []
        self.replies: list[messages.LocationReply] = []
        self.registrations = 0
        self.acked: set[int | None] = set()  # times of the fixes acknowledged
        self.hold_acks = False
        self.writer: asyncio.StreamWriter | None = None
        self.serial = 0
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def send(self, msg_id: int, body: bytes = b"") -> int:
        assert self.writer is not None
        self.serial += 1
        self.writer.write(encode(msg_id, PHONE, self.serial, body))
        return self.serial

    def drop(self) -> None:
        assert self.writer is not None
        self.writer.close()
        self.writer = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        frames = FrameReader()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                for frame in frames.feed(data):
                    assert isinstance(frame, Frame), frame
                    self.receive(frame, writer)
                await writer.drain()

    def receive(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        def ack(result: int = commands.OK) -> None:
            body = commands.general_response_body(frame.serial, frame.msg_id, result)
            writer.write(to(frame, commands.GENERAL_RESPONSE, 0, body))

        message = messages.read(frame)
        if isinstance(message, messages.Registration):
            self.registrations += 1
            body = commands.registration_response_body(frame.serial, commands.REGISTERED, CODE)
            writer.write(to(frame, commands.REGISTRATION_RESPONSE, 0, body))
        elif isinstance(message, messages.Authentication):
            ack(commands.OK if message.code == CODE else commands.FAILURE)
        elif isinstance(message, messages.Location | messages.Batch):
            found = message.locations if isinstance(message, messages.Batch) else [message]
            self.reports += [(frame.msg_id, location) for location in found]
            if not self.hold_acks:
                ack()
                self.acked |= {location.ts for location in found}
        elif isinstance(message, messages.TerminalResponse):
            self.answers.append(message)
        elif isinstance(message, messages.LocationReply):
            self.replies.append(message)
        else:
            ack()


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    p = Platform()
    p.server = await asyncio.start_server(p.serve, "127.0.0.1", 0)
    yield p
    p.server.close()
    if p.writer is not None:
        p.writer.close()


@contextlib.asynccontextmanager
async def running(terminal: Terminal, platform: Platform) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(terminal.run("127.0.0.1", platform.port, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110 - the terminal's state has no event
            await asyncio.sleep(0.01)


def walker(auth_code: str | None = None, version: int | None = None) -> Terminal:
    """A terminal walking north-east through 莲都 on a clock 60× the wall's, reporting
    every 5 s of its time."""
    clock = DeviceClock(rate=60)
    track = line((28.4517, 119.9127), (28.4617, 119.9227), clock.now() - 10_000, 1.4)
    return Terminal(
        PHONE,
        track,
        interval_s=5.0,
        retry_s=0.05,
        clock=clock,
        auth_code=auth_code,
        version=version,
    )


async def test_registers_authenticates_and_reports_its_track(platform: Platform) -> None:
    terminal = walker()
    async with running(terminal, platform):
        await until(lambda: len(platform.reports) >= 4)
    assert platform.registrations == 1 and terminal.auth_code == CODE
    times = [loc.ts for _, loc in platform.reports]
    assert all(loc.fix_valid and msg == messages.LOCATION for msg, loc in platform.reports)
    assert times == sorted(times) and len(set(times)) == len(times)
    for _, loc in platform.reports:
        assert loc.ts is not None
        at = terminal.track.at([loc.ts])
        assert loc.lat == pytest.approx(float(at.lat[0]), abs=1e-6)
        assert loc.lon == pytest.approx(float(at.lon[0]), abs=1e-6)
        assert loc.speed_kmh == pytest.approx(1.4 * 3.6, abs=0.1) and loc.satellites == 12
    # A terminal holding its code authenticates without registering again.
    again = walker(auth_code=CODE, version=1)
    async with running(again, platform):
        await until(lambda: again.acked >= 1)
    assert platform.registrations == 1


async def test_unacknowledged_fixes_come_back_as_a_blind_area_upload(platform: Platform) -> None:
    terminal = walker()
    async with running(terminal, platform):
        await until(lambda: terminal.acked >= 2)
        platform.hold_acks = True  # the platform stops answering, then the link drops
        await until(lambda: len(terminal.unacked) >= 3)
        platform.hold_acks = False
        acked = set(platform.acked)
        unanswered = {loc.ts for _, loc in platform.reports} - acked
        platform.drop()
        await until(lambda: terminal.sessions == 2 and not unanswered & set(terminal.unacked))
    blind = [loc.ts for msg, loc in platform.reports if msg == messages.BATCH]
    assert len(unanswered) >= 3
    assert unanswered <= set(blind)  # every fix it never saw acknowledged, resent in 0x0704
    assert blind == sorted(blind)  # oldest first
    assert not acked & set(blind)  # and none it had acknowledged


async def test_answers_platform_commands(platform: Platform) -> None:
    terminal = walker()
    async with running(terminal, platform):
        await until(lambda: terminal.acked >= 1)
        query = platform.send(commands.LOCATION_QUERY)
        text = platform.send(commands.TEXT_MESSAGE, commands.text_message_body("请立即返回住所"))
        interval = platform.send(
            commands.SET_PARAMETERS,
            commands.parameters_body(commands.report_interval_params(60)),
        )
        await until(lambda: len(platform.answers) >= 2 and len(platform.replies) >= 1)
        terminal.alarm = ALARM_EMERGENCY
        reports = len(platform.reports)
        await until(lambda: len(platform.reports) >= reports + 3)
    assert platform.replies[0].serial == query and platform.replies[0].location.fix_valid
    assert {(a.serial, a.msg_id, a.result) for a in platform.answers} == {
        (text, commands.TEXT_MESSAGE, 0),
        (interval, commands.SET_PARAMETERS, 0),
    }
    assert terminal.texts == ["请立即返回住所"] and terminal.interval_s == 60
    late = [loc for _, loc in platform.reports[reports:]]
    gaps = np.diff([loc.ts for loc in late])
    assert (gaps == 60_000).all()  # every 60 s of the terminal's clock now
    assert all(loc.alarm & ALARM_EMERGENCY for loc in late)
