"""A minimal MQTT 3.1.1 QoS 1 publisher: CONNECT, pipelined PUBLISH, count PUBACKs.

Why not paho-mqtt: on this 2-core box a paho QoS 1 publisher tops out near 5,000
messages/s (its per-message Python bookkeeping — in-flight scans, property objects —
costs more than the broker's work), below what one paho subscriber can take, so the load
generator itself would be the bottleneck. Writing pre-encoded packets in bulk and
counting the 4-byte PUBACKs is what brokers' own load tools do.

Backpressure: at most `window` messages are unacknowledged at a time. Packet ids are 16
bits, so the window must stay below 65,535 (paho fails there too); the caller waits in
`wait` when the window is full.
"""

from __future__ import annotations

import select
import socket
import time

_PUBACK = b"\x40"
_CONNACK = 0x20
MAX_WINDOW = 65_000


def _length(n: int) -> bytes:
    """MQTT's variable-length "remaining length"."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


class Publisher:
    def __init__(self, host: str, port: int, client_id: str, window: int) -> None:
        if not 0 < window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}")
        self.window = window
        self.sent = 0
        self.acked = 0
        self._pending = b""
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Clean session, keep-alive 0 (the broker never expects a PINGREQ from us).
        body = _string(b"MQTT") + bytes([4, 0x02, 0, 0]) + _string(client_id.encode())
        self.sock.sendall(bytes([0x10]) + _length(len(body)) + body)
        connack = self._read_exactly(4)
        if connack[0] != _CONNACK or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack.hex()}")
        self.sock.settimeout(None)

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    @property
    def free(self) -> int:
        return self.window - (self.sent - self.acked)

    def publish(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Send (topic, payload) pairs as QoS 1 PUBLISH packets in one write; the caller
        keeps len(messages) <= free."""
        packets = []
        for topic, payload in messages:
            self.sent += 1
            head = _string(topic) + (self.sent % 65_535 + 1).to_bytes(2, "big")
            packets.append(b"\x32" + _length(len(head) + len(payload)) + head + payload)
        self.sock.sendall(b"".join(packets))

    def wait(self, timeout: float) -> int:
        """Read the PUBACKs that arrive within `timeout` (0: only those already here);
        returns the number of messages acknowledged so far."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        while ready:
            data = self.sock.recv(65_536)
            if not data:
                raise ConnectionError("broker closed the connection")
            data = self._pending + data
            whole = len(data) - len(data) % 4
            # PUBACKs are the only packets a broker sends a publish-only client.
            if data[:whole:4].count(_PUBACK) != whole // 4:
                raise ConnectionError("unexpected packet from the broker")
            self.acked += whole // 4
            self._pending = data[whole:]
            ready, _, _ = select.select([self.sock], [], [], 0)
        return self.acked

    def drain(self, timeout: float) -> bool:
        """Wait (up to `timeout`) for every message to be acknowledged."""
        deadline = time.monotonic() + timeout
        while self.acked < self.sent:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()
