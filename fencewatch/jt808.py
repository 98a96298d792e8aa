"""`fencewatch jt808`: the JT/T 808 gateway alone (ingest.jt808.gateway), for a deployment
that runs it apart from the API — in front of the terminals, say. It needs the database
(terminals and their codes) and the broker; the shards that judge run elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys

from fencewatch.config import ConfigError, Settings, listen_socket
from fencewatch.servers import ServerUrls, servers
from ingest.jt808.gateway import Gateway
from storage.db import open_pool


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
        if settings.jt808_host is None:
            raise ConfigError("FENCEWATCH_JT808 is off: nothing to run")
        sock = listen_socket("FENCEWATCH_JT808", settings.jt808_host, settings.jt808_port)
    except ConfigError as exc:
        print(f"fencewatch jt808: {exc}", file=sys.stderr)
        return 1
    with servers(settings, need=("postgres", "mqtt")) as urls:
        return asyncio.run(_run(settings, urls, sock))


async def _run(settings: Settings, urls: ServerUrls, sock: socket.socket) -> int:
    pool = await open_pool(urls.database_url, min_size=1, max_size=4)
    gateway = Gateway(pool, urls.mqtt_url, f"{settings.client_id}-jt808-{settings.worker_id}")
    serving = asyncio.create_task(gateway.serve(sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fencewatch JT/T 808 gateway on {settings.jt808_host}:{settings.jt808_port}", flush=True)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    await pool.close()
    return 0
