"""Settings from the environment (spec 4.3). Unset server URLs mean "start an embedded one"."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import msgspec
import paho.mqtt.client as mqtt


class ConfigError(ValueError):
    pass


# What one process may run: ingest (shards, the engine's clock, snapshots), api (HTTP API,
# console, live feed) and scheduler (alert delivery and escalation, duties, retention, the
# archive).
ROLES = frozenset({"ingest", "api", "scheduler"})

# Unacknowledged seconds before escalation, by alert severity (alerts.record.SEVERITY).
DEFAULT_ESCALATE_AFTER_S = {"critical": 300, "high": 600, "normal": 1800, "low": 0}

# Pursuit (alerts.pursuit): seconds a device must stay clear of any breach before its normal
# reporting is restored — as long as the engine treats a return as the same breach
# (Policy.reopen_s), so a device that may be about to breach again keeps reporting fast.
DEFAULT_PURSUIT_HOLD_S = 300

# Retention (duties.retention): days after supervision ends that location data is kept —
# five years, leap days included (docs/security.md says why).
DEFAULT_RETENTION_DAYS = 1826
MIN_RETENTION_DAYS = 1

# The archive tier of fixes (storage.archive): days after which a day's fixes move from
# PostgreSQL to Parquet files (at least one: today's partition is still being written).
DEFAULT_ARCHIVE_AFTER_DAYS = 7
# …and hours after which an hour's fixes still in PostgreSQL are packed a device-hour a row
# (storage.compaction; at least one: an hour's fixes still arrive in bulk just after it).
DEFAULT_PACK_AFTER_HOURS = 1

# The console's base map (api.console): the CRS its tiles are drawn in.
TILES_CRS = ("wgs84", "gcj02")


def _severities(name: str, text: str) -> dict[str, int]:
    """'critical=300,high=600' → a full severity table (the defaults fill the rest)."""
    table = dict(DEFAULT_ESCALATE_AFTER_S)
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        if key.strip() not in table or not value.strip().isdigit():
            raise ConfigError(
                f"{name} must look like critical=300,high=600,normal=1800,low=0, got {text!r}"
            )
        table[key.strip()] = int(value)
    return table


def _days(name: str, text: str) -> tuple[int, ...]:
    try:
        days = tuple(sorted({int(p) for p in text.split(",") if p.strip()}, reverse=True))
    except ValueError:
        raise ConfigError(f"{name} must be a comma-separated list of days, got {text!r}") from None
    if any(d < 0 for d in days):
        raise ConfigError(f"{name} must not be negative, got {text!r}")
    return days


def _number(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {text!r}")
    return value


def _whole_days(env: dict[str, str], name: str, default: int, low: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        days = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of days, got {text!r}") from None
    if days < low:
        raise ConfigError(f"{name} must be at least {low}, got {days}")
    return days


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


def _address(name: str, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be host:port, got {text!r}")
    return host, int(port)


def listen_socket(name: str, host: str, port: int) -> socket.socket:
    """A listening socket for the server at setting `name`, bound before anything else
    starts: with the port taken the start stops here with the reason, instead of running
    on without that server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(
            f"{name}: cannot listen on {host}:{port} ({exc.strerror or exc});"
            f" another process has it? Set {name} to a free host:port"
        ) from None


def _roles(text: str) -> frozenset[str]:
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    if not roles or roles - ROLES:
        raise ConfigError(
            f"FENCEWATCH_ROLES must be a comma list of {', '.join(sorted(ROLES))}, got {text!r}"
        )
    return roles


class MqttAddress(msgspec.Struct, frozen=True):
    """Where the broker is: one host, or the nodes of a cluster (`mqtt://h1:1883,h2:1883`),
    which a client tries in turn whenever its connection fails or is lost."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    others: tuple[tuple[str, int], ...] = ()  # further nodes of the same cluster

    @classmethod
    def parse(cls, url: str) -> MqttAddress:
        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        try:
            nodes = [_node(h) for h in hosts.split(",")]
        except ValueError:
            nodes = []
        if parts.scheme not in ("mqtt", "tcp") or not nodes or parts.path not in ("", "/"):
            raise ConfigError(
                "FENCEWATCH_MQTT_URL must look like mqtt://[user:pass@]host:port"
                f"[,host:port…], got {redact(url)!r}"
            )
        user, colon, password = userinfo.partition(":")
        (host, port), *others = nodes
        return cls(
            host,
            port,
            unquote(user) if userinfo else None,
            unquote(password) if colon else None,
            tuple(others),
        )

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        return ((self.host, self.port), *self.others)

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """A URL of the same broker that logs in as `username` (anonymously without)."""
        login = ""
        if username is not None:
            login = quote(username, safe="")
            login += f":{quote(password, safe='')}@" if password is not None else "@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        return f"mqtt://{login}{hosts}"

    def login(self, connection: str) -> str | None:
        """The user name one of the service's own connections logs in with.

        Mosquitto as docs/security.md sets it up names every client after its user
        (`use_username_as_clientid`): two connections under one user replace each other,
        and a clean-session one deletes the persistent session of the other, queued fixes
        and all. So each connection has a login of its own, `<account>@<connection>` for
        the account in the URL (`@` never occurs in a device id, so no device can hold
        one): `fw@0of1` for a single shard's session, `fw@3of8`, `fw@cmd`.
        `fencewatch devices provision` creates them all, with the account's password, and
        no login for the bare account: a connection that names none is refused at once
        instead of throwing another off."""
        return login_name(self.username, connection) if self.username else None

    def client(
        self, client_id: str, max_delay: int = 10, *, connection: str | None = None, **options: Any
    ) -> mqtt.Client:
        """A paho client for this broker: its credentials set, reconnecting with backoff,
        to the next node of a cluster each time. `connection` names one of the service's
        own connections (see `login`); without it the URL's user logs in as it is."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **options)
        user = self.username if connection is None else self.login(connection)
        if user:
            client.username_pw_set(user, self.password)
        client.reconnect_delay_set(min_delay=1, max_delay=max_delay)
        if self.others:
            attempts = itertools.count()
            nodes = self.nodes

            def next_node(client: mqtt.Client, userdata: object) -> None:
                # paho connects to one host; every attempt after the first goes to the next
                # node. Its `host` setter refuses while connecting, hence the attributes.
                client._host, client._port = nodes[next(attempts) % len(nodes)]

            client.on_pre_connect = next_node
        return client


def login_name(account: str, connection: str) -> str:
    """One connection's login under a service account (MqttAddress.login)."""
    return f"{account}@{connection}"


def _node(text: str) -> tuple[str, int]:
    parts = urlsplit(f"//{text}")
    if not parts.hostname:
        raise ValueError(text)
    return parts.hostname, parts.port or 1883


def redact(url: str) -> str:
    """`url` with its password replaced by `***`, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"


class Settings(msgspec.Struct, frozen=True):
    database_url: str | None = None
    redis_url: str | None = None
    mqtt_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Where phones post the OsmAnd protocol (Traccar Client, spec 4.1b; ingest.osmand_http),
    # in processes with the api role; None: no listener. FENCEWATCH_OSMAND defaults to
    # 127.0.0.1:5055; Settings made in code (the tests') have none unless they ask.
    osmand_host: str | None = None
    osmand_port: int = 5055
    # Where JT/T 808 terminals connect over TCP (ingest.jt808.gateway), in processes with
    # the api role and in `fencewatch jt808`; None: no gateway. FENCEWATCH_JT808 defaults to
    # 127.0.0.1:6808; Settings made in code have none unless they ask.
    jt808_host: str | None = None
    jt808_port: int = 6808
    data_dir: Path = Path("var")
    webhook_url: str | None = None
    webhook_secret: str = ""
    client_id: str = "fencewatch-ingest"
    # Horizontal workers (docs/scaling.md): every process of a deployment uses the same
    # shard count and client id base; each runs some of `roles`.
    shards: int = 1
    roles: frozenset[str] = ROLES
    worker_id: str = msgspec.field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    timezone: str = "Asia/Shanghai"  # schedules (curfews, time-windowed zones) are local
    # Alert channels (alerts.channels): an HTTP SMS gateway, signed like the webhook, and
    # e-mail. Unset = that channel is off. The device downlink uses the MQTT broker.
    sms_url: str | None = None
    sms_secret: str = ""
    # Check-ins (supervision.checkins): the supervision app signs face verification results
    # with this (alerts.signed's V2 scheme), and random check-in minutes are drawn from it.
    # Unset: verification results are refused.
    checkin_secret: str = ""
    smtp_url: str | None = None  # smtp://[user:pass@]host[:port][?starttls=1] or smtps://
    smtp_from: str = "fencewatch@localhost"
    # Escalation (alerts.escalation): seconds an open alert may stay unacknowledged before
    # the next level is told, by severity (0 = never escalates); in a heightened period
    # these are multiplied by `escalate_heightened_factor`.
    escalate_after_s: dict[str, int] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_ESCALATE_AFTER_S)
    )
    escalate_heightened_factor: float = 0.5
    # Storm control (alerts.ratelimit): at most `notify_limit` messages per recipient about
    # one person within `notify_window_s`, and the same alert type about the same person
    # once per window; the rest are folded into one summary message.
    notify_limit: int = 3
    notify_window_s: int = 600
    pursuit_hold_s: int = DEFAULT_PURSUIT_HOLD_S
    # Scheduled duties (duties): reminder lead times in days, and the reports' day of month.
    remind_order_days: tuple[int, ...] = (7, 1)
    remind_term_days: tuple[int, ...] = (30, 7, 1)
    report_day: int = 25
    retention_days: int = DEFAULT_RETENTION_DAYS
    # Where archived fixes live: a directory (None: `data_dir`/archive) or
    # s3://bucket/prefix on S3-compatible storage, whose endpoint (host:port of e.g. MinIO;
    # None: AWS) is `archive_s3_endpoint` and whose keys are AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY as usual.
    archive_url: str | None = None
    archive_s3_endpoint: str | None = None
    archive_after_days: int = DEFAULT_ARCHIVE_AFTER_DAYS
    pack_after_hours: int = DEFAULT_PACK_AFTER_HOURS
    # The console's base map: off unless a tile URL template ({z}/{x}/{y}, {s}) is set,
    # so the map works on an isolated network; `tiles_crs` is one of TILES_CRS.
    tiles_url: str | None = None
    tiles_crs: str = "wgs84"
    tiles_subdomains: str = "abc"
    tiles_attribution: str = ""
    # The Ed25519 key that signs evidence bundles (evidence.keys), made on first use;
    # None: evidence-key.pem in `data_dir`. API processes of one deployment share it.
    evidence_key: Path | None = None

    @property
    def evidence_key_path(self) -> Path:
        return self.evidence_key or self.data_dir / "evidence-key.pem"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        host, port = _address("FENCEWATCH_HTTP", env.get("FENCEWATCH_HTTP", "127.0.0.1:8080"))
        osmand = env.get("FENCEWATCH_OSMAND") or "127.0.0.1:5055"
        osmand_host, osmand_port = (
            (None, 5055) if osmand == "off" else _address("FENCEWATCH_OSMAND", osmand)
        )
        jt808 = env.get("FENCEWATCH_JT808") or "127.0.0.1:6808"
        jt808_host, jt808_port = (
            (None, 6808) if jt808 == "off" else _address("FENCEWATCH_JT808", jt808)
        )
        mqtt = env.get("FENCEWATCH_MQTT_URL") or None
        if mqtt:
            MqttAddress.parse(mqtt)
        return cls(
            database_url=env.get("FENCEWATCH_DATABASE_URL") or None,
            redis_url=env.get("FENCEWATCH_REDIS_URL") or None,
            mqtt_url=mqtt,
            http_host=host,
            http_port=port,
            osmand_host=osmand_host,
            osmand_port=osmand_port,
            jt808_host=jt808_host,
            jt808_port=jt808_port,
            data_dir=Path(env.get("FENCEWATCH_DATA_DIR", "var")),
            webhook_url=env.get("FENCEWATCH_WEBHOOK_URL") or None,
            webhook_secret=env.get("FENCEWATCH_WEBHOOK_SECRET", ""),
            client_id=env.get("FENCEWATCH_MQTT_CLIENT_ID", "fencewatch-ingest"),
            shards=int(_number(env, "FENCEWATCH_SHARDS", 1, 1, 1024)),
            roles=_roles(env.get("FENCEWATCH_ROLES") or ",".join(sorted(ROLES))),
            worker_id=env.get("FENCEWATCH_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}",
            timezone=env.get("FENCEWATCH_TIMEZONE") or "Asia/Shanghai",
            sms_url=env.get("FENCEWATCH_SMS_URL") or None,
            sms_secret=env.get("FENCEWATCH_SMS_SECRET", ""),
            checkin_secret=env.get("FENCEWATCH_CHECKIN_SECRET", ""),
            smtp_url=env.get("FENCEWATCH_SMTP_URL") or None,
            smtp_from=env.get("FENCEWATCH_SMTP_FROM") or "fencewatch@localhost",
            escalate_after_s=_severities(
                "FENCEWATCH_ESCALATE_AFTER", env.get("FENCEWATCH_ESCALATE_AFTER", "")
            ),
            escalate_heightened_factor=_number(
                env, "FENCEWATCH_ESCALATE_HEIGHTENED_FACTOR", 0.5, 0.01, 1.0
            ),
            notify_limit=int(_number(env, "FENCEWATCH_NOTIFY_LIMIT", 3, 1, 1000)),
            notify_window_s=int(_number(env, "FENCEWATCH_NOTIFY_WINDOW_S", 600, 1, 86_400)),
            pursuit_hold_s=int(
                _number(env, "FENCEWATCH_PURSUIT_HOLD_S", DEFAULT_PURSUIT_HOLD_S, 0, 86_400)
            ),
            remind_order_days=_days(
                "FENCEWATCH_REMIND_ORDER_DAYS", env.get("FENCEWATCH_REMIND_ORDER_DAYS", "7,1")
            ),
            remind_term_days=_days(
                "FENCEWATCH_REMIND_TERM_DAYS", env.get("FENCEWATCH_REMIND_TERM_DAYS", "30,7,1")
            ),
            report_day=int(_number(env, "FENCEWATCH_REPORT_DAY", 25, 1, 28)),
            retention_days=_whole_days(
                env, "FENCEWATCH_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, MIN_RETENTION_DAYS
            ),
            archive_url=env.get("FENCEWATCH_ARCHIVE_URL") or None,
            archive_s3_endpoint=env.get("FENCEWATCH_ARCHIVE_S3_ENDPOINT") or None,
            archive_after_days=_whole_days(
                env, "FENCEWATCH_ARCHIVE_AFTER_DAYS", DEFAULT_ARCHIVE_AFTER_DAYS, 1
            ),
            pack_after_hours=int(
                _number(env, "FENCEWATCH_PACK_AFTER_HOURS", DEFAULT_PACK_AFTER_HOURS, 1, 24 * 7)
            ),
            tiles_url=env.get("FENCEWATCH_TILES_URL") or None,
            tiles_crs=_choice(
                "FENCEWATCH_TILES_CRS", env.get("FENCEWATCH_TILES_CRS") or "wgs84", TILES_CRS
            ),
            tiles_subdomains=env.get("FENCEWATCH_TILES_SUBDOMAINS") or "abc",
            tiles_attribution=env.get("FENCEWATCH_TILES_ATTRIBUTION", ""),
            evidence_key=Path(key) if (key := env.get("FENCEWATCH_EVIDENCE_KEY")) else None,
        )
