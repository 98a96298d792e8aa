"""`fencewatch serve` as a separate process, and devices that publish over connections of
their own: for tests of the service against a real broker set up as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from fencewatch.config import MqttAddress

BOUND_S = 120.0  # upper bound for "eventually"


def start(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Run `fencewatch serve` with `env` (added to ours) answering on `port`; return once
    its /healthz says 200."""
    with log_path.open("ab") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "fencewatch.cli", "serve"],
            env={**os.environ, **env, "FENCEWATCH_HTTP": f"127.0.0.1:{port}"},
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + BOUND_S
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        if service.poll() is not None or time.monotonic() > deadline:
            service.kill()
            raise AssertionError(log_path.read_text()[-3000:])
        time.sleep(0.2)


def stop(services: list[subprocess.Popen[bytes]]) -> None:
    for service in services:
        if service.poll() is None:
            service.terminate()
    for service in services:
        service.wait(timeout=60)


def metric(port: int, name: str) -> float:
    """A Prometheus sample of the process answering on `port` (labelled series summed)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


class Devices:
    """Simulated devices, each on a connection of its own (`url_of(device)` says how it logs
    in), publishing with QoS 1 and keeping what the broker acknowledged (PUBACK)."""

    def __init__(self, url_of: Callable[[str], str], devices: list[str]) -> None:
        self.acked: set[tuple[str, int]] = set()  # (topic, seq)
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, int], tuple[str, int]] = {}  # (device, mid) → key
        self._early: set[tuple[str, int]] = set()  # PUBACKs that beat publish() returning
        self._ready = {d: threading.Event() for d in devices}
        self.clients = {d: self._connect(d, MqttAddress.parse(url_of(d))) for d in devices}
        for device, ready in self._ready.items():
            assert ready.wait(BOUND_S), f"{device} never connected: {self.refused}"

    def _connect(self, device: str, address: MqttAddress) -> mqtt.Client:
        client = address.client(device, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(100)

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                self.refused.append(f"{device}: {reason}")
            else:
                self._ready[device].set()

        def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            with self._lock:
                key = self._inflight.pop((device, mid), None)
                if key is None:
                    self._early.add((device, mid))
                else:
                    self.acked.add(key)

        client.on_connect = on_connect
        client.on_publish = on_publish
        client.connect_async(address.host, address.port, keepalive=10)
        client.loop_start()
        return client

    def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Hand every message to its device's connection (paho sends it, again after a
        reconnect, until the broker acknowledges it)."""
        for topic, payload in messages:
            device = topic.split("/")[1]
            # Not under our lock: paho calls on_publish holding its own, which publish takes.
            mid = self.clients[device].publish(topic, json.dumps(payload), qos=1).mid
            with self._lock:
                if (device, mid) in self._early:
                    self._early.discard((device, mid))
                    self.acked.add((topic, payload["seq"]))
                else:
                    self._inflight[(device, mid)] = (topic, payload["seq"])

    def wait_acked(self, count: int) -> None:
        deadline = time.monotonic() + BOUND_S
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
