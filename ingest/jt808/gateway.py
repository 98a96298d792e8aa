"""The JT/T 808 gateway (`fencewatch jt808`, and inside `fencewatch serve` on
FENCEWATCH_JT808): terminals' TCP connections in, spec 4.1 messages into the MQTT spine.

Like the OsmAnd listener (ingest.osmand_http) it does not judge: it speaks for its
terminals on their own topics, `em/<device>/loc` and `/evt` at QoS 1, and the terminal's
answer (0x8001) goes out only once the broker has acknowledged every message made from
what it sent (PUBACK). A terminal keeps what it has not had answered and sends it again,
so a gateway killed at any moment loses nothing a terminal was told it had: the broker
holds it for the shard that judges the wearer, and a message the terminal sends twice is
stored once (its fixes carry the same seq and time).

Per connection: registration (0x0100 → 0x8100, ingest.jt808.terminals), authentication
(0x0102), then heartbeats, locations (0x0200, 0x0201), batches of buffered fixes (0x0704)
and answers to commands (0x0001). Before authentication only the first two are accepted.
The engine's commands for a terminal's device (`em/<device>/cmd`, alerts.downlink) go
out on its connection as 0x8300 / 0x8103 / 0x8201; its 0x0001 answer is published as the
device's acknowledgement (`em/<device>/cmd/ack`), which ingest records as any other.

Hostile input costs a connection, never the gateway: bad frames are counted and skipped,
a terminal that keeps sending them is cut off, a connection that has not authenticated
within `auth_timeout_s` or sends nothing whole for `idle_s` is closed, and past
`max_connections` (or `max_unauthenticated` not yet authenticated) new connections are
closed at once. Each with a log line and `fencewatch_jt808_dropped{reason}`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque

import asyncpg
import msgspec

from fencewatch.metrics import JT808_CONNECTIONS, JT808_DROPPED, JT808_FIXES
from ingest import topics
from ingest.jt808 import commands as jtplat
from ingest.jt808 import downlink, terminals
from ingest.jt808 import frame as jtframe
from ingest.jt808 import messages as jtmsg
from ingest.jt808.uplink import uplink
from ingest.messages import Invalid
from ingest.publisher import Publisher

log = logging.getLogger("fencewatch.jt808")

CONNECTION = "jt808"  # the gateway's login among the service's connections (MqttAddress.login)
PUBLISH_WAIT_S = 10.0
MAX_UNREAD = 64 * 1024  # bytes sent to a terminal and not yet read by it
MAX_UNANSWERED = 256  # commands sent to a terminal whose answer is awaited


class Limits(msgspec.Struct, frozen=True):
    auth_timeout_s: float = 30.0  # from connecting to authenticated
    idle_s: float = 300.0  # without a whole frame, once authenticated (heartbeat: 60 s)
    max_connections: int = 10_000
    max_unauthenticated: int = 256
    max_errors: int = 20  # bad frames or refused messages before the connection is cut
    pending_commands: int = 16  # commands held per device while its terminal is away
    read_bytes: int = 4096


class Dropped(Exception):
    """Why a connection is closed: `reason` is the metric's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Gateway:
    def __init__(
        self,
        pool: asyncpg.Pool,
        mqtt_url: str,
        client_id: str,
        limits: Limits | None = None,
    ) -> None:
        self.pool = pool
        self.limits = limits or Limits()
        self.publisher = Publisher(
            mqtt_url,
            client_id,
            CONNECTION,
            subscriptions=[topics.tag(topics.ANY, topics.CMD)],
            on_message=self._command,
            # Commands sent while the gateway is down wait for it in the broker.
            persistent=True,
        )
        self.sessions: dict[str, Session] = {}  # device → its authenticated connection
        self.open: set[Session] = set()
        self.connections = 0
        self.unauthenticated = 0
        # Commands for devices whose terminal is not connected: sent when it authenticates.
        self.waiting: dict[str, deque[bytes]] = {}
        # Devices known to be JT/T 808 terminals' (connected, or looked up for a command):
        # commands for the others (tags on MQTT) are not its to hold.
        self.known: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self.publisher.connected

    async def serve(self, sock: socket.socket) -> None:
        self.publisher.start()
        server = await asyncio.start_server(self._connection, sock=sock)
        try:
            await server.serve_forever()
        finally:
            server.close()
            for session in list(self.open):  # a terminal reconnects, to a gateway that runs
                session.writer.transport.abort()
            self.publisher.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        limits = self.limits
        full = (
            "too_many_connections"
            if self.connections >= limits.max_connections
            else "too_many_unauthenticated"
            if self.unauthenticated >= limits.max_unauthenticated
            else None
        )
        if full:
            _dropped(full, peer, "refused at once")
            writer.transport.abort()
            return
        self.connections += 1
        self.unauthenticated += 1
        JT808_CONNECTIONS.inc()
        session = Session(self, reader, writer, peer)
        self.open.add(session)
        try:
            await session.run()
        except Dropped as exc:
            _dropped(exc.reason, session.name, str(exc))
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("JT/T 808 %s: connection lost", session.name)
        except Exception:
            log.exception("JT/T 808 %s: failed; connection closed", session.name)
        finally:
            self.open.discard(session)
            self.connections -= 1
            if session.terminal is None:
                self.unauthenticated -= 1
            elif self.sessions.get(session.terminal.device) is session:
                del self.sessions[session.terminal.device]
            JT808_CONNECTIONS.dec()
            writer.transport.abort()

    def authenticated(self, session: Session) -> None:
        assert session.terminal is not None
        self.unauthenticated -= 1
        device = session.terminal.device
        before = self.sessions.get(device)
        if before is not None:  # a terminal that reconnects: its old connection is dead
            log.info("JT/T 808 %s: connected again; the earlier connection closed", device)
            before.writer.transport.abort()
        self.sessions[device] = session
        for command in self.waiting.pop(device, ()):
            session.command(command)

    def _command(self, topic: str, payload: bytes) -> None:
        """A command from the engine (alerts.downlink), in the asyncio loop."""
        named = topics.parse(topic)
        if named is None or named.kind != topics.CMD:
            return
        session = self.sessions.get(named.device)
        if session is not None:
            session.command(payload)
        elif named.device in self.known:
            self._hold(named.device, payload)
        else:
            task = asyncio.create_task(self._hold_if_terminal(named.device, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _hold(self, device: str, payload: bytes) -> None:
        queue = self.waiting.setdefault(device, deque(maxlen=self.limits.pending_commands))
        if len(queue) == queue.maxlen:
            log.warning("JT/T 808 %s: terminal away; its oldest waiting command dropped", device)
        queue.append(payload)

    async def _hold_if_terminal(self, device: str, payload: bytes) -> None:
        """A command for a device not seen since the gateway started: held if the device
        is a JT/T 808 terminal's (the others, tags on MQTT, take their own)."""
        try:
            terminal = await self.pool.fetchval(
                "SELECT jt808 IS NOT NULL FROM devices WHERE id = $1", device
            )
        except Exception as exc:
            log.warning("JT/T 808: command for %s not held (%s)", device, exc)
            return
        if not terminal:
            return
        self.known.add(device)
        session = self.sessions.get(device)
        if session is not None:
            session.command(payload)
        else:
            self._hold(device, payload)


class Session:
    """One terminal's connection."""

    def __init__(
        self,
        gateway: Gateway,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: object,
    ) -> None:
        self.gateway = gateway
        self.reader = reader
        self.writer = writer
        self.name = f"{peer}"
        self.terminal: terminals.Terminal | None = None
        self.phone = ""  # as the terminal sends it, zero padding included
        self.version: int | None = None
        self.frames = jtframe.FrameReader()
        self.packets = jtframe.Reassembler()
        self.errors = 0
        self.serial = 0
        # platform serial of a command sent → the command's id, for the terminal's answer
        self.sent: dict[int, str] = {}
        self.alarm: int | None = None  # the last alarm word: events are its rising bits

    async def run(self) -> None:
        limits = self.gateway.limits
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.auth_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await self.reader.read(limits.read_bytes)
            except TimeoutError:
                if self.terminal is None:
                    raise Dropped(
                        "auth_timeout", f"not authenticated within {limits.auth_timeout_s:g}s"
                    ) from None
                raise Dropped("idle", f"nothing whole for {limits.idle_s:g}s") from None
            if not data:
                log.info("JT/T 808 %s: closed by the terminal", self.name)
                return
            whole = False
            for item in self.frames.feed(data):
                if isinstance(item, jtframe.FrameError):
                    self._error(item.reason, item.detail)
                    continue
                whole = True
                await self._frame(item)
            if whole and self.terminal is not None:
                deadline = loop.time() + limits.idle_s
            await self._drain()

    async def _drain(self) -> None:
        """Wait while the terminal reads what was sent; one that stops reading is cut off
        before its answers pile up in the gateway's memory."""
        if self.writer.transport.get_write_buffer_size() > MAX_UNREAD:
            raise Dropped("not_reading", f"over {MAX_UNREAD} bytes sent and not read")
        try:
            async with asyncio.timeout(self.gateway.limits.idle_s):
                await self.writer.drain()
        except TimeoutError:
            raise Dropped("not_reading", "answers not read") from None

    def _error(self, reason: str, detail: str) -> None:
        """A bad frame or refused message: counted and skipped; too many cut the line."""
        _dropped(reason, self.name, detail)
        self.errors += 1
        if self.errors > self.gateway.limits.max_errors:
            raise Dropped("too_many_errors", f"{self.errors} bad frames or refused messages")

    async def _frame(self, frame: jtframe.Frame) -> None:
        try:
            whole = self.packets.add(frame)
        except jtframe.FrameError as exc:
            self._error(exc.reason, exc.detail)
            return
        if whole is None:
            return
        if self.terminal is not None and whole.phone != self.phone:
            self._error("wrong_terminal", f"a frame from {whole.phone} on {self.phone}'s line")
            return
        self.version = whole.version
        try:
            message = jtmsg.read(whole)
        except Invalid as exc:
            detail = f"message {whole.msg_id:04x}: {exc.detail}"
            if exc.reason == "unsupported" and self.terminal is not None:
                # Terminals send messages of their own (pass-through, multimedia, answers
                # to queries never asked): told so, and no mark against the connection.
                JT808_DROPPED.labels(exc.reason).inc()
                log.info("JT/T 808 %s: %s", self.name, detail)
            else:
                self._error(exc.reason, detail)
            result = jtplat.UNSUPPORTED if exc.reason == "unsupported" else jtplat.BAD_MESSAGE
            self._answer(whole, result)
            return
        await self._message(whole, message)

    async def _message(self, m: jtframe.Frame, message: jtmsg.Message) -> None:
        if isinstance(message, jtmsg.Registration):
            await self._register(m)
        elif isinstance(message, jtmsg.Authentication):
            await self._authenticate(m, message.code)
        elif self.terminal is None:
            self._error("unauthenticated", f"message {m.msg_id:04x} before authentication")
            self._answer(m, jtplat.FAILURE)
        elif isinstance(message, jtmsg.Location):
            await self._publish(m, [message])
        elif isinstance(message, jtmsg.Batch):
            await self._publish(m, message.locations)
        elif isinstance(message, jtmsg.LocationReply):
            if await self._publish(m, [message.location]):  # a locate command's answer
                await self._command_answer(jtmsg.TerminalResponse(message.serial, m.msg_id, 0))
        elif isinstance(message, jtmsg.TerminalResponse):
            # An answer is not answered: it is the terminal's word on a command.
            await self._command_answer(message)
        else:  # a heartbeat
            self._answer(m, jtplat.OK)

    # -- registration and authentication ------------------------------------------------------

    async def _register(self, m: jtframe.Frame) -> None:
        number = terminals.number(m.phone) if m.phone.isdigit() else None
        async with self.gateway.pool.acquire() as conn:
            enrolled = None if number is None else await terminals.enrol(conn, number)
            known = enrolled is not None or (
                number is not None and await terminals.known(conn, number)
            )
        if enrolled is not None:
            log.info(
                "JT/T 808 %s: terminal %s of %s registered", self.name, m.phone, enrolled[0].device
            )
            answer = jtplat.registration_response_body(m.serial, jtplat.REGISTERED, enrolled[1])
            self._send(jtplat.REGISTRATION_RESPONSE, answer, m)
            return
        result = jtplat.TERMINAL_TAKEN if known else jtplat.NO_SUCH_TERMINAL
        self._error(
            "registration_closed" if known else "unknown_terminal",
            f"terminal {m.phone} "
            + ("has registered before: its enrolment is closed" if known else "is in no roster"),
        )
        answer = jtplat.registration_response_body(m.serial, result)
        self._send(jtplat.REGISTRATION_RESPONSE, answer, m)

    async def _authenticate(self, m: jtframe.Frame, code: str) -> None:
        terminal = None
        if m.phone.isdigit():
            async with self.gateway.pool.acquire() as conn:
                terminal = await terminals.authenticate(conn, terminals.number(m.phone), code)
        if terminal is None:
            self._error("bad_auth", f"terminal {m.phone}: unknown, or not its code")
            self._answer(m, jtplat.FAILURE)
            return
        if self.terminal is not None:  # authenticated again on the same line: nothing new
            self._answer(m, jtplat.OK)
            return
        self.terminal, self.phone = terminal, m.phone
        self.name = f"{terminal.device} ({m.phone})"
        self.gateway.known.add(terminal.device)
        self._answer(m, jtplat.OK)
        log.info("JT/T 808 %s: authenticated", self.name)
        self.gateway.authenticated(self)

    # -- uplink ---------------------------------------------------------------------------------

    async def _publish(self, m: jtframe.Frame, locations: list[jtmsg.Location]) -> bool:
        """Every fix and event of the message to the broker, then the terminal's answer;
        whether the broker took them."""
        assert self.terminal is not None
        device = self.terminal.device
        out = uplink(locations, time.time_ns() // 1_000_000, self.terminal.crs, self.alarm)
        messages = [(topics.tag(device, topics.LOC), p) for p in out.loc]
        messages += [(topics.tag(device, topics.EVT), p) for p in out.events]
        publish = self.gateway.publisher.publish
        try:
            async with asyncio.timeout(PUBLISH_WAIT_S):
                await asyncio.gather(*(publish(topic, payload) for topic, payload in messages))
        except (TimeoutError, ConnectionError) as exc:
            # No "got it": the terminal keeps the fixes and sends them again.
            log.warning("JT/T 808 %s: not taken by the broker (%s)", self.name, exc)
            self._answer(m, jtplat.FAILURE)
            return False
        self.alarm = out.alarm
        JT808_FIXES.inc(len(locations))
        self._answer(m, jtplat.OK)
        return True

    # -- downlink -------------------------------------------------------------------------------

    def command(self, payload: bytes) -> None:
        """An engine command (spec 4.1 downlink) to this terminal, as JT/T 808 messages."""
        try:
            sent = downlink.outgoing(payload, self.version)
        except ValueError as exc:
            log.warning("JT/T 808 %s: command not sent (%s)", self.name, exc)
            return
        for out in sent:
            serial = self._send(out.msg_id, out.body)
            if out.command is not None:
                self.sent[serial] = out.command
        while len(self.sent) > MAX_UNANSWERED:  # answers that never came
            del self.sent[next(iter(self.sent))]

    async def _command_answer(self, answer: jtmsg.TerminalResponse) -> None:
        assert self.terminal is not None
        command_id = self.sent.pop(answer.serial, None)
        if command_id is None:
            return
        if answer.result != jtplat.OK:
            log.warning(
                "JT/T 808 %s: command %s answered %d (not done)",
                self.name,
                command_id,
                answer.result,
            )
            return
        ack = msgspec.json.encode({"v": 1, "id": command_id, "type": "ack"})
        topic = topics.tag(self.terminal.device, topics.CMD_ACK)
        try:
            async with asyncio.timeout(PUBLISH_WAIT_S):
                await self.gateway.publisher.publish(topic, ack)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("JT/T 808 %s: acknowledgement of %s lost (%s)", self.name, command_id, exc)

    # -- the wire -------------------------------------------------------------------------------

    def _answer(self, m: jtframe.Frame, result: int) -> None:
        body = jtplat.general_response_body(m.serial, m.msg_id, result)
        self._send(jtplat.GENERAL_RESPONSE, body, m)

    def _send(self, msg_id: int, body: bytes, to: jtframe.Frame | None = None) -> int:
        """Send a platform message; returns its serial."""
        serial = self.serial
        self.serial = (self.serial + 1) & 0xFFFF
        phone = to.phone if to is not None else self.phone
        version = to.version if to is not None else self.version
        self.writer.write(jtframe.encode(msg_id, phone, serial, body, version))
        return serial


def _dropped(reason: str, who: object, detail: str) -> None:
    JT808_DROPPED.labels(reason).inc()
    log.warning("JT/T 808 %s: %s (%s)", who, reason, detail)
