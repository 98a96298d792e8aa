"""A JT/T 808 terminal for the gateway's protocol-level tests (hostile input, registration):
it sends through the codec (ingest.jt808), or raw, exactly what a test says, and reads the
platform's answers. A terminal that lives its own life is simulators.jt808."""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.jt808 import commands as platform
from ingest.jt808 import messages
from ingest.jt808.frame import Frame, FrameReader, encode

WAIT_S = 10.0  # an upper bound for a round trip, not a speed requirement


class Terminal:
    def __init__(self, phone: str, version: int | None = None) -> None:
        self.phone = phone
        self.version = version
        self.serial = 0
        self.frames = FrameReader()
        self.inbox: list[Frame] = []  # platform messages not yet asked for
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> Terminal:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.frames = FrameReader()
        self.inbox = []
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()

    async def raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, msg_id: int, body: bytes = b"") -> int:
        serial = self.serial
        self.serial = (self.serial + 1) & 0xFFFF
        await self.raw(encode(msg_id, self.phone, serial, body, self.version))
        return serial

    async def expect(self, msg_id: int) -> Frame:
        """The next platform message with `msg_id` (others wait in `inbox`)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for i, f in enumerate(self.inbox):
                    if f.msg_id == msg_id:
                        return self.inbox.pop(i)
                assert self.reader is not None
                data = await self.reader.read(4096)
                if not data:
                    raise ConnectionError("closed by the gateway")
                for item in self.frames.feed(data):
                    assert isinstance(item, Frame), item
                    self.inbox.append(item)

    async def answer_to(self, serial: int) -> int:
        """The result of the platform's 0x8001 to our message `serial`."""
        while True:
            f = await self.expect(platform.GENERAL_RESPONSE)
            response = platform.read_general_response(f.body)
            if response.serial == serial:
                return response.result

    async def closed(self) -> bool:
        """Whether the gateway has closed the connection (reading to its end)."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(WAIT_S * 3):
                while await self.reader.read(4096):
                    pass
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return True

    async def register(self) -> platform.RegistrationResponse:
        await self.send(
            messages.REGISTRATION, messages.registration_body("FW0001", version=self.version)
        )
        f = await self.expect(platform.REGISTRATION_RESPONSE)
        return platform.read_registration_response(f.body)

    async def authenticate(self, code: str) -> int:
        body = messages.authentication_body(code, version=self.version, imei="861234567890123")
        return await self.answer_to(await self.send(messages.AUTHENTICATION, body))

    async def report(self, lat: float, lon: float, ts: int, **fields: Any) -> int:
        body = messages.location_body(lat, lon, ts, satellites=9, **fields)
        return await self.answer_to(await self.send(messages.LOCATION, body))
