"""A NATS cluster with JetStream and MQTT on loopback, for broker-failure tests.

NATS's MQTT support keeps sessions, subscriptions and QoS 1 messages in JetStream
streams; with `stream_replicas: 3` each is replicated (Raft) on three nodes, so a node
lost with `kill -9` loses nothing a client was acknowledged. It speaks MQTT 3.1.1 (QoS 0
and 1), which is what ingest uses. Each node needs a `server_name`, JetStream, a `cluster`
block naming the others and an `mqtt` listener.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from fencewatch.embedded import free_port

BOUND_S = 60.0


def nats_binary() -> str | None:
    found = shutil.which("nats-server")
    if found is None and os.access("/usr/sbin/nats-server", os.X_OK):
        found = "/usr/sbin/nats-server"
    return found


@dataclass
class Node:
    name: str
    mqtt_port: int
    cluster_port: int
    monitor_port: int
    proc: subprocess.Popen[bytes] | None = None


class NatsCluster:
    def __init__(self, root: Path, size: int = 3, replicas: int = 3, ack_wait: str = "30s") -> None:
        """`ack_wait`: how long a message delivered and not acknowledged waits before it is
        delivered again — also after its subscriber's node died."""
        self.root = root
        self.nodes = [Node(f"n{i}", free_port(), free_port(), free_port()) for i in range(size)]
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        # A cluster name of its own: nodes left running by an earlier, killed run keep
        # dialling their old routes, and one of those ports may now be this cluster's; NATS
        # refuses a route from another cluster, so they cannot join this one as a second n0.
        cluster = f"fw-{uuid.uuid4().hex[:8]}"
        for node in self.nodes:
            (root / node.name).mkdir(parents=True)
            (root / f"{node.name}.conf").write_text(
                f"server_name: {node.name}\n"
                "listen: 127.0.0.1:-1\n"  # NATS clients: a port of the OS's choosing
                f"http: 127.0.0.1:{node.monitor_port}\n"
                f'jetstream {{ store_dir: "{root / node.name}" }}\n'
                f"cluster {{ name: {cluster}, listen: 127.0.0.1:{node.cluster_port},"
                f" routes: [{routes}] }}\n"
                f"mqtt {{ listen: 127.0.0.1:{node.mqtt_port}, stream_replicas: {replicas},"
                f' ack_wait: "{ack_wait}" }}\n'
            )

    def start(self) -> None:
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            self._wait_mqtt(node)

    def restart(self, index: int) -> None:
        """Start a killed node again, on its data; return once it takes MQTT sessions."""
        node = self.nodes[index]
        self._spawn(node)
        self._wait_mqtt(node)

    def _spawn(self, node: Node) -> None:
        binary = nats_binary()
        assert binary is not None
        with open(self.root / f"{node.name}.log", "ab") as log:
            node.proc = subprocess.Popen(
                [binary, "-c", str(self.root / f"{node.name}.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _wait_mqtt(self, node: Node) -> None:
        """Until the node accepts an MQTT session: JetStream, clustered, is up."""
        deadline = time.monotonic() + BOUND_S
        while not _accepts_session(node.mqtt_port):
            assert node.proc is not None and node.proc.poll() is None, self.log(node)
            assert time.monotonic() < deadline, self.log(node)
            time.sleep(0.2)

    def url(self, *order: int, login: str = "") -> str:
        """An MQTT URL of the cluster, its nodes in the given order (the first is tried
        first, the others after a failure)."""
        order = order or tuple(range(len(self.nodes)))
        hosts = ",".join(f"127.0.0.1:{self.nodes[i].mqtt_port}" for i in order)
        return f"mqtt://{login}{hosts}"

    def kill(self, index: int) -> None:
        proc = self.nodes[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def copies(self, index: int) -> dict[str, int]:
        """How many nodes hold each stream (its leader and replicas), as node `index` sees
        them: stream name → nodes."""
        node = self.nodes[index]
        url = f"http://127.0.0.1:{node.monitor_port}/jsz?streams=true&accounts=true"
        with urllib.request.urlopen(url, timeout=5) as r:
            jsz: dict[str, Any] = json.load(r)
        return {
            stream["name"]: 1 + len(stream.get("cluster", {}).get("replicas", []))
            for account in jsz.get("account_details", [])
            for stream in account.get("stream_detail", [])
        }

    def log(self, node: Node) -> str:
        return (self.root / f"{node.name}.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                node.proc.wait(timeout=30)


def _accepts_session(port: int) -> bool:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv311
    )
    try:
        client.connect("127.0.0.1", port, keepalive=5)
    except OSError:
        return False
    outcome: list[bool] = []
    client.on_connect = lambda c, u, f, rc, p: outcome.append(not rc.is_failure)
    deadline = time.monotonic() + 5
    while not outcome and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return bool(outcome and outcome[0])
