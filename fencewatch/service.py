"""`fencewatch serve`: the whole service in one process — MQTT ingest, the engine and its
clock, write-behind snapshots, rule reloads, webhook delivery, the API and the console —
or, with FENCEWATCH_ROLES, some of it, as one of several processes (docs/scaling.md).

Each part is a task; the first to fail stops the service (a supervisor restarts it, and
nothing is lost: unacknowledged messages wait in the broker, the engine restores from its
snapshot plus the fixes committed after it)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerts.feed import Feed
from api.probe import Asgi, create_probe_app
from fencewatch import embedded_mqtt, memory
from fencewatch.channels import channel
from fencewatch.config import ConfigError, MqttAddress, Settings, listen_socket
from fencewatch.servers import ServerUrls, reload_mqtt, servers
from geofence.ruleset import RuleSet
from ingest.balancer import Balancer
from ingest.broker_watch import BrokerWatch
from ingest.credentials import DeviceEntry
from ingest.jt808 import terminals
from ingest.jt808.gateway import Gateway
from ingest.leases import Leases, ingest_lag
from ingest.proximity import ProximityCheck
from ingest.shard import ShardRunner
from ingest.shards import Shard
from storage import partitions
from storage.db import open_pool
from storage.rules import RULES_CHANNEL, load_rules

if TYPE_CHECKING:
    from ingest.osmand_http import OsmandListener
    from simulators.device import FleetPlan

log = logging.getLogger("fencewatch")

# A shard is snapshotted every SNAPSHOT_EVERY_S, and sooner once it has committed
# SNAPSHOT_AFTER_FIXES since its last snapshot: what a worker taking it over judges again
# stays under that many fixes however many tags the shard has (docs/scaling.md).
SNAPSHOT_EVERY_S = 30.0
SNAPSHOT_AFTER_FIXES = 100_000
SNAPSHOT_CHECK_S = 1.0
PARTITIONS_EVERY_S = 6 * 3600.0
ARCHIVE_EVERY_S = 3600.0
CLOCK_EVERY_S = 1.0
DEMO_INTERVAL_S = 10.0
# How long a stop waits for the parts to finish of themselves (HTTP requests and live feeds
# to end, deliveries under way to be recorded) before it cancels them: an operator's
# restart takes seconds, whatever clients are connected. What ingest committed is
# acknowledged after, by the shards' close, which gives the commits in flight and the
# shards' snapshots as long again; what it did not commit is redelivered by the broker.
STOP_GRACE_S = 5


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_http(settings: Settings) -> socket.socket:
    return listen_socket("FENCEWATCH_HTTP", settings.http_host, settings.http_port)


def bind_osmand(settings: Settings) -> socket.socket | None:
    """The OsmAnd listener's socket, in a process with the api role, unless it is off."""
    if "api" not in settings.roles or settings.osmand_host is None:
        return None
    return listen_socket("FENCEWATCH_OSMAND", settings.osmand_host, settings.osmand_port)


def bind_jt808(settings: Settings) -> socket.socket | None:
    """The JT/T 808 gateway's socket, in a process with the api role, unless it is off."""
    if "api" not in settings.roles or settings.jt808_host is None:
        return None
    return listen_socket("FENCEWATCH_JT808", settings.jt808_host, settings.jt808_port)


class Service:
    def __init__(
        self,
        settings: Settings,
        urls: ServerUrls,
        http_socket: socket.socket | None = None,
        osmand_socket: socket.socket | None = None,
        jt808_socket: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.urls = urls
        self.http_socket = http_socket
        self.osmand_socket = osmand_socket
        self.jt808_socket = jt808_socket
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.osmand: OsmandListener | None = None
        self.jt808: Gateway | None = None
        self.broker_watch = BrokerWatch()

    async def run(self, demo_fleet: int = 0) -> None:
        s = self.settings
        http_socket = self.http_socket or bind_http(s)  # a port taken stops the start here
        osmand_socket = self.osmand_socket or bind_osmand(s)
        jt808_socket = self.jt808_socket or bind_jt808(s)
        self.pool = await open_pool(self.urls.database_url, min_size=2, max_size=8)
        self.redis = Redis.from_url(self.urls.redis_url)
        async with self.pool.acquire() as conn:
            await partitions.ensure(conn)
        if demo_fleet:
            plan = await self._load_demo(demo_fleet)
        self.rules = await self._rules()
        if "ingest" in s.roles:
            await memory.settle()  # the roster as read is garbage now, the rules live long
        self.feed = Feed(self.redis)
        leases = Leases(self.redis, s.client_id, s.worker_id)
        self.shards = Balancer(leases, s.shards, s.client_id, self._open_shard)
        jobs: dict[str, Coroutine[Any, Any, None]] = {}
        if "ingest" in s.roles:
            jobs["ingest"] = self.shards.run()
            jobs["clock"] = self._every(CLOCK_EVERY_S, self._tick)
            jobs["snapshots"] = self._every(SNAPSHOT_CHECK_S, self._snapshot)
            jobs["partitions"] = self._every(PARTITIONS_EVERY_S, self._partitions)
        if "ingest" in s.roles or "scheduler" in s.roles or osmand_socket is not None:
            jobs["rules"] = self._listen_rules()
        if "api" in s.roles:
            # Imported by the roles that run them, as the scheduler's parts and the archive
            # below: an ingest worker does without the API's, the reports' and the archive's
            # libraries, a third of its memory at 100,000 tags (docs/benchmarks.md), and
            # without FastAPI's and the alerts' delivery (api.probe).
            from api.app import create_app
            from api.context import ApiContext

            app: Asgi = create_app(
                ApiContext(self.pool, self.redis, self.health, self.rules_changed, s, self.stop)
            )
        else:
            app = create_probe_app(self.health)
        server = QuietServer(
            uvicorn.Config(
                app,
                host=s.http_host,
                port=s.http_port,
                log_level="warning",
                timeout_graceful_shutdown=STOP_GRACE_S,
            )
        )
        jobs["http"] = server.serve(sockets=[http_socket])
        servers = [server]
        if osmand_socket is not None:
            from ingest.osmand_http import OsmandListener

            self.osmand = OsmandListener(
                self.pool,
                lambda: self.rules,
                self.urls.mqtt_url,
                f"{s.client_id}-osmand-{s.worker_id}",
            )
            servers.append(
                QuietServer(
                    uvicorn.Config(
                        self.osmand.app,
                        log_level="warning",
                        lifespan="off",
                        timeout_graceful_shutdown=STOP_GRACE_S,
                    )
                )
            )
            jobs["osmand"] = servers[-1].serve(sockets=[osmand_socket])
            jobs["osmand receipts"] = self.osmand.run()
        if jt808_socket is not None:
            self.jt808 = Gateway(self.pool, self.urls.mqtt_url, f"{s.client_id}-jt808")
            jobs["jt808"] = self.jt808.serve(jt808_socket)
        if "scheduler" in s.roles:
            from alerts.alerting import Alerting
            from duties import retention
            from duties.scheduler import Duties
            from storage.archive import Archive

            self.alerting = Alerting(self.pool, self.redis, s, self.urls.mqtt_url)
            jobs["alerting"] = self.alerting.run(self.stop)
            jobs["duties"] = Duties(self.pool, s, redis=self.redis).run(self.stop)
            jobs["retention"] = retention.job(
                self.pool, s.retention_days, Archive.of(s), redis=self.redis
            )
            # The hourly move to the archive and the packing of closed days: here, not in
            # an ingest worker, which would carry pyarrow and DuckDB (some 60 MB) from its
            # first run on, beside the engine it is sized for.
            jobs["archive"] = self._every(ARCHIVE_EVERY_S, self._archive)
            # People near people, across every shard: one check for the deployment.
            jobs["proximity"] = ProximityCheck(self.pool, self.redis, lambda: self.rules).run(
                self.stop
            )
        if demo_fleet:
            from simulators.fleet import run_fleet

            # Reports every 10 s, and the first two minutes of the plan arrive at once, as
            # from tags that were out of touch: the demo has alerts to show within a minute.
            fleet_url, passwords = await self._fleet_login(plan)
            jobs["fleet"] = self._once_judging(
                run_fleet(
                    fleet_url,
                    plan,
                    self.stop,
                    interval_s=DEMO_INTERVAL_S,
                    history_s=120,
                    passwords=passwords,
                    osmand_url=self._osmand_url(),
                    jt808_address=self._jt808_address(),
                )
            )
        tasks = {asyncio.create_task(job, name=name): name for name, job in jobs.items()}
        stopper = asyncio.create_task(self.stop.wait(), name="stop")
        # uvicorn offers no "started" event to wait on, only the flag.
        while not all(srv.started for srv in servers) and not stopper.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self._banner(demo_fleet)
        self.ready.set()
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("%s failed", task.get_name(), exc_info=task.exception())
        await self._shutdown(servers, list(tasks))

    async def _once_judging(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` once every shard's broker session is subscribed: on a first start the
        broker acknowledges what devices publish before any session subscribes, and drops it
        (the demo lost each tag's first two minutes that way)."""
        while not self.shards.connected and not self.stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if self.stop.is_set():
            work.close()
            return
        await work

    async def _shutdown(
        self, servers: Sequence[uvicorn.Server], tasks: list[asyncio.Task[None]]
    ) -> None:
        self.stop.set()
        for server in servers:
            server.should_exit = True
        for task in tasks:
            if task.get_name() not in (
                "http",
                "osmand",
                "alerting",
                "duties",
                "fleet",
                "proximity",
            ):
                task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        if pending:
            log.warning(
                "stopping: %s still running after %ss; cancelled",
                ", ".join(sorted(t.get_name() for t in pending)),
                STOP_GRACE_S,
            )
            for task in pending:
                task.cancel()
            _, stuck = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            if stuck:
                log.error(
                    "stopping: %s did not end when cancelled; left behind",
                    ", ".join(sorted(t.get_name() for t in stuck)),
                )
        # Whatever the broker delivered but we did not acknowledge is redelivered next time.
        await self.shards.close(STOP_GRACE_S)
        await self.redis.aclose()
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await self.pool.close()
        except TimeoutError:
            log.warning("stopping: database connections still busy; closed unfinished")
            self.pool.terminate()

    @property
    def connected(self) -> bool:
        return self.shards.connected

    @property
    def backlog(self) -> int:
        return sum(r.source.backlog for r in self.shards.held.values())

    @property
    def busy(self) -> bool:
        return any(r.judging.busy for r in self.shards.held.values())

    async def _open_shard(self, shard: Shard, name: str) -> ShardRunner:
        runner = await ShardRunner.open(
            shard, name, self.rules, self.pool, self.feed, self.urls.mqtt_url, self.broker_watch
        )
        await memory.settle()  # the snapshot read and the fixes judged again are garbage
        return runner

    # -- parts -----------------------------------------------------------------------------

    async def _rules(self) -> RuleSet:
        async with self.pool.acquire() as conn:
            roster, zones = await load_rules(conn, self.settings.timezone)
        # Compiling 100,000 people's rules is about a second of CPU: in a thread, the loop
        # goes on judging meanwhile (slower, sharing the interpreter) instead of stalling
        # at every rule change.
        rules = await asyncio.to_thread(RuleSet, roster, zones)
        for problem in rules.problems:
            log.warning("rules: %s", problem)
        return rules

    async def reload_rules(self) -> None:
        rules = self.rules = await self._rules()
        for runner in list(self.shards.held.values()):
            await runner.rules_changed(rules)
        if "ingest" in self.settings.roles:
            await memory.settle()  # the replaced rules are garbage
        log.info(
            "rules reloaded: %d supervisees, %d zones", len(rules.supervisees), len(rules.zones)
        )

    async def rules_changed(self, supervisees: list[str] | None) -> None:
        """Tell every fencewatch process (through Redis) to reload; this one at once."""
        if "ingest" in self.settings.roles:
            await self.reload_rules()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.publish(
                channel(self.redis, RULES_CHANNEL), msgspec.json.encode(supervisees)
            )

    async def _listen_rules(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(channel(self.redis, RULES_CHANNEL))
                async for _ in pubsub.listen():
                    await self.reload_rules()
            except (RedisError, OSError) as exc:
                log.warning("rules channel lost (%s); resubscribing", exc)
                await asyncio.sleep(2)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` periodically; a failed round is logged and the next one tried (a
        snapshot that could not be written is written at the next)."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:
                log.exception("%s failed; trying again in %ss", work.__name__, seconds)

    async def _tick(self) -> None:
        now = int(time.time() * 1000)
        for runner in list(self.shards.held.values()):
            await runner.tick(now)

    async def _partitions(self) -> None:
        async with self.pool.acquire() as conn:
            await partitions.ensure(conn)

    async def _archive(self) -> None:
        """Move the days past `archive_after_days` to the archive (storage.archiving), then
        pack the closed hours left in PostgreSQL (storage.compaction); the scheduler does it
        (should two run, one finds it under way and skips). pyarrow and DuckDB are loaded
        at the first run, not at start (about 60 MB)."""
        from storage import archiving, compaction
        from storage.archive import Archive

        s = self.settings
        # Both give way to ingest while its heartbeats say it runs behind (storage.pacing).
        lag = functools.partial(ingest_lag, self.redis, s.client_id)
        done = await archiving.run(
            self.pool, Archive.of(s), datetime.now(UTC), s.archive_after_days, lag=lag
        )
        if done["files"]:
            log.info("archive: moved %d fixes into %d files", done["fixes"], len(done["files"]))
        after = timedelta(hours=s.pack_after_hours)
        await compaction.run(self.pool, datetime.now(UTC), after, lag=lag)

    async def _snapshot(self) -> None:
        for runner in list(self.shards.held.values()):
            if runner.snapshot_due(SNAPSHOT_EVERY_S, SNAPSHOT_AFTER_FIXES):
                await runner.snapshot()
                await memory.trim()  # the snapshot's parts, and what the batches freed

    async def health(self) -> dict[str, bool]:
        async def db() -> bool:
            try:
                return bool(await self.pool.fetchval("SELECT 1"))
            except Exception:
                return False

        async def cache() -> bool:
            try:
                return bool(await self.redis.ping())
            except Exception:
                return False

        health = {"database": await db(), "redis": await cache()}
        if "ingest" in self.settings.roles:
            health["ingest"] = self.shards.connected and not self._failed("ingest")
            health["broker"] = all(r.connected for r in self.shards.held.values())
        if self.osmand is not None:
            health["osmand"] = self.osmand.ready
        if self.jt808 is not None:
            health["jt808"] = self.jt808.ready
        return health

    def _osmand_url(self) -> str | None:
        """Where a local client reaches the OsmAnd listener, if there is one."""
        s = self.settings
        if self.osmand is None or s.osmand_host is None:
            return None
        host = "127.0.0.1" if s.osmand_host in ("0.0.0.0", "::") else s.osmand_host
        return f"http://{f'[{host}]' if ':' in host else host}:{s.osmand_port}/"

    def _jt808_address(self) -> tuple[str, int] | None:
        """Where a local terminal reaches the JT/T 808 gateway, if there is one."""
        s = self.settings
        if self.jt808 is None or s.jt808_host is None:
            return None
        return ("127.0.0.1" if s.jt808_host in ("0.0.0.0", "::") else s.jt808_host), s.jt808_port

    def _failed(self, name: str) -> bool:
        return any(t.get_name() == name and t.done() for t in asyncio.all_tasks())

    async def _load_demo(self, tags: int) -> FleetPlan:
        from api.tokens import create_token
        from fencewatch.loader import load_scenario
        from simulators.demo import build_demo, write_demo

        zones, roster, plan = build_demo(tags)
        with tempfile.TemporaryDirectory() as tmp:
            write_demo(Path(tmp), zones, roster)
            counts = await load_scenario(self.pool, Path(tmp))
        # Its JT/T 808 wristbands register afresh at every start, as its tags get new
        # passwords: their codes are not kept anywhere.
        wristbands = [d.id for d in plan.devices if d.jt808 is not None]
        async with self.pool.acquire() as conn:
            await terminals.open_enrolment(conn, wristbands)
        log.info("demo data loaded: %s", counts)
        self.demo_token = await create_token(
            self.pool, "operator", subject="demo operator", days=30
        )
        return plan

    async def _fleet_login(self, plan: FleetPlan) -> tuple[str, dict[str, str] | None]:
        """How the simulated devices reach the broker: on the embedded one, each logs in as
        itself with a password given afresh at every start; on a broker of the user's own,
        whose accounts fencewatch cannot make, anonymously — never with the service's
        account, whose logins are the service's own connections."""
        if "mqtt" in self.urls.embedded:
            datadir = self.settings.data_dir / "mqtt"
            devices = [DeviceEntry(d.id, d.owntracks, d.jt808 is not None) for d in plan.devices]
            passwords = await asyncio.to_thread(
                embedded_mqtt.provision_fleet, datadir, devices, self.settings.shards
            )
            reload_mqtt(datadir)
            return self.urls.mqtt_url, passwords
        address = MqttAddress.parse(self.urls.mqtt_url)
        if address.username:
            log.warning(
                "the simulated tags connect anonymously: a broker with per-device accounts"
                " refuses them (provision them, or run the demo on the embedded broker)"
            )
        return address.url(), None

    def _banner(self, demo_fleet: int) -> None:
        s = self.settings
        base = f"http://{s.http_host}:{s.http_port}"
        lines = ["fencewatch is up: " + ", ".join(sorted(s.roles))]
        if "api" in s.roles:
            lines[0] = f"fencewatch is up: console {base}/  API {base}/api/v1  docs {base}/docs"
            lines.append(
                f"  health {base}/healthz  metrics {base}/metrics  OpenAPI {base}/openapi.json"
            )
        else:
            lines.append(f"  health {base}/healthz  metrics {base}/metrics")
        if "ingest" in s.roles and s.shards > 1:
            lines.append(f"  worker {s.worker_id}: ingest shards of {s.shards}, as leased")
        if self.osmand is not None:
            lines.append(f"  phones (OsmAnd protocol, Traccar Client) {self._osmand_url()}")
        if self.jt808 is not None:
            lines.append(f"  JT/T 808 terminals (TCP) {s.jt808_host}:{s.jt808_port}")
        if self.urls.embedded:
            embedded = ", ".join(self.urls.embedded)
            lines.append(f"  embedded servers: {embedded} (data in {self.settings.data_dir})")
        if demo_fleet:
            # simulators.demo: the eleventh device is a phone running the Traccar Client,
            # the twelfth and thirteenth JT/T 808 wristbands.
            devices = "ankle tags"
            if demo_fleet > 10:
                devices += ", a Traccar Client phone"
            if demo_fleet > 11:
                devices += " and JT/T 808 wristbands"
            lines.append(f"  simulating {demo_fleet} devices around 丽水市莲都区: {devices}")
            lines.append(f"  operator token (log in to the console with it): {self.demo_token}")
        print("\n".join(lines), flush=True)


def run(demo_fleet: int = 0) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    memory.configure()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        settings = Settings.from_env()  # a bad setting stops the start, with the reason
        # Before any embedded server is started.
        sockets = bind_http(settings), bind_osmand(settings), bind_jt808(settings)
    except ConfigError as exc:
        print(f"fencewatch serve: {exc}", file=sys.stderr)
        return 1
    with servers(settings) as urls:
        return asyncio.run(_main(settings, urls, demo_fleet, *sockets))


async def _main(
    settings: Settings,
    urls: ServerUrls,
    demo_fleet: int,
    http_socket: socket.socket,
    osmand_socket: socket.socket | None,
    jt808_socket: socket.socket | None,
) -> int:
    service = Service(settings, urls, http_socket, osmand_socket, jt808_socket)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop.set)
    try:
        await service.run(demo_fleet)
    except Exception as exc:
        print(f"fencewatch serve: {exc}", file=sys.stderr)
        log.debug("startup failed", exc_info=True)
        return 1
    return 0
