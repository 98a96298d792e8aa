"""`fencewatch jt808`: the JT/T 808 gateway alone (ingest.jt808.gateway), for a deployment
that runs it apart from the API — in front of the terminals, say. It needs the database
(terminals and their codes) and the broker; the shards that judge run elsewhere. Like an
ingest worker it answers /healthz and /metrics on FENCEWATCH_HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys

import uvicorn

from api.probe import create_probe_app
from fencewatch.config import ConfigError, Settings, listen_socket
from fencewatch.servers import ServerUrls, servers
from fencewatch.service import QuietServer, bind_http
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
        probes = bind_http(settings)
    except ConfigError as exc:
        print(f"fencewatch jt808: {exc}", file=sys.stderr)
        return 1
    with servers(settings, need=("postgres", "mqtt")) as urls:
        return asyncio.run(_run(settings, urls, sock, probes))


async def _run(
    settings: Settings, urls: ServerUrls, sock: socket.socket, probes: socket.socket
) -> int:
    pool = await open_pool(urls.database_url, min_size=1, max_size=4)
    gateway = Gateway(pool, urls.mqtt_url, f"{settings.client_id}-jt808")

    async def health() -> dict[str, bool]:
        try:
            database = bool(await pool.fetchval("SELECT 1"))
        except Exception:
            database = False
        return {"database": database, "jt808": gateway.ready}

    app = create_probe_app(health)
    server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    tasks = [
        asyncio.create_task(gateway.serve(sock)),
        asyncio.create_task(server.serve(sockets=[probes])),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"fencewatch JT/T 808 gateway on {settings.jt808_host}:{settings.jt808_port};"
        f" health and metrics on http://{settings.http_host}:{settings.http_port}",
        flush=True,
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    tasks[0].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)
    await pool.close()
    return 0
