"""A simulated JT/T 808 terminal: an asyncio TCP client speaking the protocol through
fencewatch's own codec (ingest.jt808), as the trackers sold in China do.

    python -m simulators.jt808 --gateway 127.0.0.1:6808 --phone 13912345678 --code CODE

walks its wearer along a line (`--to LAT,LON`) and reports until interrupted.

It connects, registers (0x0100) unless it holds an authentication code already, keeps the
code the platform's 0x8100 gives it, authenticates (0x0102), and from then on reports its
position (0x0200) every `interval_s` of its clock, taken from the `Track` it is given
(simulators.route), and sends a heartbeat (0x0002) when it has been quiet for
`heartbeat_s`. Like a real terminal it keeps every fix until the platform's 0x8001 for
the message that carried it arrives; it goes on taking fixes while it has no connection
(a blind area, 盲区), and after connecting again it uploads every fix not yet acknowledged
as 0x0704 blind-area batches before reporting live again.

It answers the platform: a location query (0x8201) with 0x0201, a text message (0x8300)
and a parameter setting (0x8103) with 0x0001 — a new report interval (0x0029) takes effect
from the next report. `alarm` is the alarm word every report carries (set
`ALARM_EMERGENCY` to press its SOS button).

Public interface: `Terminal(phone, track, ...)`, `await terminal.run(host, port, stop)`;
what happened is on the terminal: `auth_code`, `interval_s`, `unacked` (fixes not yet
acknowledged, by time), `acked` (count), `texts`, `sessions`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import signal
import sys

import numpy as np

from ingest.jt808 import commands, messages
from ingest.jt808.frame import MAX_BODY, Frame, FrameError, FrameReader, encode
from ingest.jt808.uplink import ALARM_EMERGENCY
from ingest.messages import Invalid
from simulators.fleet import DeviceClock
from simulators.geo import distance_m
from simulators.route import Track

log = logging.getLogger("fencewatch.simulators")

__all__ = ["ALARM_EMERGENCY", "Refused", "Terminal"]

RESPONSE_TIMEOUT_S = 10.0
MAX_UNACKED = 20_000  # fixes the terminal's flash keeps; the oldest go first
GNSS = messages.STATUS_GPS | messages.STATUS_BDS


class Refused(Exception):
    """The platform refused the terminal's registration or authentication."""


class Terminal:
    def __init__(
        self,
        phone: str,
        track: Track,
        *,
        interval_s: float = 30.0,
        heartbeat_s: float = 60.0,
        retry_s: float = 1.0,
        auth_code: str | None = None,
        version: int | None = None,
        clock: DeviceClock | None = None,
        satellites: int = 12,
    ) -> None:
        self.phone = phone
        self.track = track
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.retry_s = retry_s
        self.auth_code = auth_code
        self.version = version
        self.clock = clock or DeviceClock()
        self.satellites = satellites
        self.alarm = 0
        self.unacked: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.acked = 0
        self.dropped = 0  # fell off a full flash
        self.texts: list[str] = []
        self.sessions = 0  # connections that got as far as authenticating
        self.next_report = self.clock.now()
        self._serial = 0
        self._carried: dict[int, list[int]] = {}  # serial → times of the fixes it carried
        self._waiting: dict[tuple[int, int], asyncio.Future[Frame]] = {}

    # --- the terminal's own clock ------------------------------------------------------

    def location(self, ts: int) -> bytes:
        """A 0x0200 body for where the track puts the wearer at `ts`."""
        at = self.track.at([ts])
        return messages.location_body(
            round(float(at.lat[0]), 6),
            round(float(at.lon[0]), 6),
            ts,
            alarm=self.alarm,
            status=GNSS,
            speed_kmh=float(at.spd[0]) * 3.6,
            course=int(at.hdg[0]) % 360,
            signal=25,
            satellites=self.satellites,
        )

    def take_fixes(self) -> list[int]:
        """Fixes due by now, kept until acknowledged; their times."""
        now, due = self.clock.now(), []
        while self.next_report <= now:
            ts = self.next_report - self.next_report % 1000  # the time it sends is in seconds
            self.unacked[ts] = self.location(ts)
            due.append(ts)
            self.next_report += int(self.interval_s * 1000)
        while len(self.unacked) > MAX_UNACKED:
            self.unacked.popitem(last=False)
            self.dropped += 1
        return due

    def set_interval(self, seconds: float) -> None:
        last = self.next_report - int(self.interval_s * 1000)
        self.next_report = max(self.clock.now(), last + int(seconds * 1000))
        self.interval_s = seconds

    # --- the connection ------------------------------------------------------------------

    async def run(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Stay connected to the platform at host:port until `stop` is set, taking fixes
        all the while."""
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                self.take_fixes()
                await _wait(stop, self.retry_s)
                continue
            try:
                await self._session(reader, writer, stop)
            except (OSError, EOFError, TimeoutError, Refused) as exc:
                log.info("terminal %s: connection ended (%s)", self.phone, exc)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                self._carried.clear()
                self._waiting.clear()
            if not stop.is_set():
                self.take_fixes()
                await _wait(stop, self.retry_s)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        listening = asyncio.create_task(self._listen(reader, writer))
        try:
            await self._log_in(writer)
            self.sessions += 1
            self._upload_blind(writer)
            quiet_since = asyncio.get_running_loop().time()
            tick = min(1.0, self.interval_s / 5) / self.clock.rate
            while not stop.is_set():
                if listening.done():
                    listening.result()
                    raise EOFError("the platform closed the connection")
                loop_time = asyncio.get_running_loop().time()
                for ts in self.take_fixes():
                    self._send(writer, messages.LOCATION, self.unacked[ts], carries=[ts])
                    quiet_since = loop_time
                if loop_time - quiet_since >= self.heartbeat_s:
                    self._send(writer, messages.HEARTBEAT, b"")
                    quiet_since = loop_time
                await writer.drain()
                await _wait(stop, tick)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, EOFError):
                await listening

    async def _log_in(self, writer: asyncio.StreamWriter) -> None:
        if self.auth_code is None:
            body = messages.registration_body(self.phone, version=self.version)
            serial = self._send(writer, messages.REGISTRATION, body)
            answer = await self._response(commands.REGISTRATION_RESPONSE, serial, writer)
            registered = commands.read_registration_response(answer.body)
            if registered.result != commands.REGISTERED:
                raise Refused(f"registration refused, result {registered.result}")
            self.auth_code = registered.auth_code
        body = messages.authentication_body(
            self.auth_code, version=self.version, imei="86" + self.phone.rjust(13, "0")[-13:]
        )
        serial = self._send(writer, messages.AUTHENTICATION, body)
        answer = await self._response(commands.GENERAL_RESPONSE, serial, writer)
        if commands.read_general_response(answer.body).result != commands.OK:
            # A real terminal forgets a code the platform no longer takes and registers anew.
            self.auth_code = None
            raise Refused("authentication refused")

    def _upload_blind(self, writer: asyncio.StreamWriter) -> None:
        """Everything not yet acknowledged, oldest first, in 0x0704 batches that fit one
        packet each."""
        batch: list[int] = []
        size = 3
        for ts, body in self.unacked.items():
            if size + 2 + len(body) > MAX_BODY:
                self._send_batch(writer, batch)
                batch, size = [], 3
            batch.append(ts)
            size += 2 + len(body)
        if batch:
            self._send_batch(writer, batch)

    def _send_batch(self, writer: asyncio.StreamWriter, times: list[int]) -> None:
        body = messages.batch_body([self.unacked[ts] for ts in times])
        self._send(writer, messages.BATCH, body, carries=times)

    def _send(
        self,
        writer: asyncio.StreamWriter,
        msg_id: int,
        body: bytes,
        carries: list[int] | None = None,
    ) -> int:
        serial = self._serial
        self._serial = (self._serial + 1) & 0xFFFF
        if carries:
            self._carried[serial] = carries
        writer.write(encode(msg_id, self.phone, serial, body, self.version))
        return serial

    async def _response(self, msg_id: int, serial: int, writer: asyncio.StreamWriter) -> Frame:
        """The platform's `msg_id` answering the message sent with `serial` (sent just now:
        nothing has been read since, so the answer cannot have been missed)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[(msg_id, serial)] = waiter
        await writer.drain()
        return await asyncio.wait_for(waiter, RESPONSE_TIMEOUT_S)

    async def _listen(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._read(reader, writer)
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(EOFError("the connection ended before the answer"))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        while True:
            data = await reader.read(4096)
            if not data:
                raise EOFError("the platform closed the connection")
            for item in frames.feed(data):
                if isinstance(item, FrameError):
                    log.warning("terminal %s: bad frame from the platform: %s", self.phone, item)
                    continue
                try:
                    self._receive(item, writer)
                except Invalid as bad:
                    log.warning("terminal %s: %s", self.phone, bad.detail)
                    self._send(writer, messages.TERMINAL_RESPONSE, _reply_body(item, 2))
            await writer.drain()

    def _receive(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        msg = frame.msg_id
        if msg == commands.GENERAL_RESPONSE:
            response = commands.read_general_response(frame.body)
            self._resolve(msg, response.serial, frame)
            carried = self._carried.pop(response.serial, [])
            if response.result == commands.OK:
                for ts in carried:
                    if self.unacked.pop(ts, None) is not None:
                        self.acked += 1
        elif msg == commands.REGISTRATION_RESPONSE:
            self._resolve(msg, commands.read_registration_response(frame.body).serial, frame)
        elif msg == commands.LOCATION_QUERY:
            body = messages.location_reply_body(frame.serial, self.location(self.clock.now()))
            self._send(writer, messages.LOCATION_REPLY, body)
        elif msg == commands.TEXT_MESSAGE:
            self.texts.append(commands.read_text_message(frame.body, self.version).text)
            self._send(writer, messages.TERMINAL_RESPONSE, _reply_body(frame, 0))
        elif msg == commands.SET_PARAMETERS:
            params = commands.read_parameters(frame.body)
            interval = params.get(commands.DEFAULT_REPORT_INTERVAL)
            if interval is not None and len(interval) == 4 and int.from_bytes(interval) > 0:
                self.set_interval(int.from_bytes(interval))
            self._send(writer, messages.TERMINAL_RESPONSE, _reply_body(frame, 0))
        else:
            self._send(writer, messages.TERMINAL_RESPONSE, _reply_body(frame, 3))

    def _resolve(self, msg_id: int, serial: int, frame: Frame) -> None:
        waiter = self._waiting.pop((msg_id, serial), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(frame)


def _reply_body(frame: Frame, result: int) -> bytes:
    return messages.terminal_response_body(frame.serial, frame.msg_id, result)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def line(start: tuple[float, float], end: tuple[float, float], t0: int, speed_ms: float) -> Track:
    """A straight walk from `start` to `end` (lat, lon) from `t0` at `speed_ms`."""
    lat = np.array([start[0], end[0]])
    lon = np.array([start[1], end[1]])
    metres = float(distance_m(lat[0], lon[0], lat[1], lon[1]))
    t = np.array([t0, t0 + int(metres / speed_ms * 1000)], dtype=np.int64)
    return Track(t, lat, lon, np.zeros(2, dtype=np.int8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.jt808",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gateway", default="127.0.0.1:6808", help="host:port (FENCEWATCH_JT808)")
    parser.add_argument("--phone", required=True, help="the terminal's number (its jt808 id)")
    parser.add_argument("--code", help="authentication code it holds (else it registers)")
    parser.add_argument("--version", type=int, help="speak the 2019 header with this version")
    parser.add_argument("--from", dest="start", default="28.4517,119.9127", help="lat,lon")
    parser.add_argument("--to", default="28.4600,119.9300", help="lat,lon")
    parser.add_argument("--speed", type=float, default=1.4, help="walking speed, m/s (1.4)")
    parser.add_argument("--interval", type=float, default=30.0, help="report interval, s (30)")
    args = parser.parse_args(argv)
    host, _, port = args.gateway.rpartition(":")
    start = tuple(float(x) for x in args.start.split(","))
    end = tuple(float(x) for x in args.to.split(","))
    clock = DeviceClock()
    track = line((start[0], start[1]), (end[0], end[1]), clock.now(), args.speed)
    terminal = Terminal(
        args.phone, track, interval_s=args.interval, auth_code=args.code, version=args.version
    )
    logging.basicConfig(level=logging.INFO)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await terminal.run(host, int(port), stop)
        print(f"acknowledged {terminal.acked}, unacknowledged {len(terminal.unacked)}")

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
