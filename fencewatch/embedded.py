"""Servers fencewatch starts for itself when none are configured (spec 4.3)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def mosquitto_config(datadir: Path, port: int) -> Path:
    """Write fencewatch's Mosquitto settings plus a loopback listener into `datadir`."""
    datadir.mkdir(parents=True, exist_ok=True)
    base = resources.files("fencewatch").joinpath("mosquitto.conf").read_text()
    conf = datadir / "mosquitto.conf"
    conf.write_text(
        f"{base}\nlistener {port} 127.0.0.1\npersistence_location {datadir}/\n"
        f"log_dest file {datadir}/mosquitto.log\n"
    )
    return conf


def start_mosquitto(datadir: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """Run the local `mosquitto` binary with fencewatch's config; returns (process, port)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = port or free_port()
    conf = mosquitto_config(datadir, port)
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return proc, port
