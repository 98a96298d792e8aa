"""Settings from the environment (spec 4.3). Unset server URLs mean "start an embedded one"."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import msgspec


class ConfigError(ValueError):
    pass


class MqttAddress(msgspec.Struct, frozen=True):
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ConfigError(
                f"FENCEWATCH_MQTT_URL must look like mqtt://[user:pass@]host:port, got {url!r}"
            )
        return cls(parts.hostname, parts.port or 1883, parts.username, parts.password)


class Settings(msgspec.Struct, frozen=True):
    database_url: str | None = None
    redis_url: str | None = None
    mqtt_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    data_dir: Path = Path("var")
    webhook_url: str | None = None
    webhook_secret: str = ""
    client_id: str = "fencewatch-ingest"
    timezone: str = "Asia/Shanghai"  # schedules (curfews, time-windowed zones) are local

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        http = env.get("FENCEWATCH_HTTP", "127.0.0.1:8080")
        host, _, port = http.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"FENCEWATCH_HTTP must be host:port, got {http!r}")
        mqtt = env.get("FENCEWATCH_MQTT_URL") or None
        if mqtt:
            MqttAddress.parse(mqtt)
        return cls(
            database_url=env.get("FENCEWATCH_DATABASE_URL") or None,
            redis_url=env.get("FENCEWATCH_REDIS_URL") or None,
            mqtt_url=mqtt,
            http_host=host,
            http_port=int(port),
            data_dir=Path(env.get("FENCEWATCH_DATA_DIR", "var")),
            webhook_url=env.get("FENCEWATCH_WEBHOOK_URL") or None,
            webhook_secret=env.get("FENCEWATCH_WEBHOOK_SECRET", ""),
            client_id=env.get("FENCEWATCH_MQTT_CLIENT_ID", "fencewatch-ingest"),
            timezone=env.get("FENCEWATCH_TIMEZONE", "Asia/Shanghai"),
        )
