"""Settings are read from the environment once, by the composition root
(fencewatch.config.Settings), and reach the API through its context: no route reads the
environment itself."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from api.app import create_app
from api.context import ApiContext
from api.tokens import create_token
from fencewatch.config import ConfigError, Settings
from storage.db import open_pool

TILES = "https://t{s}.tiles.example.cn/{z}/{x}/{y}.png"


def test_the_console_map_and_the_time_zone_come_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "FENCEWATCH_TILES_URL": TILES,
            "FENCEWATCH_TILES_CRS": "gcj02",
            "FENCEWATCH_TILES_SUBDOMAINS": "1234",
            "FENCEWATCH_TIMEZONE": "Asia/Urumqi",
        }
    )
    assert (s.tiles_url, s.tiles_crs, s.tiles_subdomains) == (TILES, "gcj02", "1234")
    assert s.timezone == "Asia/Urumqi"
    defaults = Settings.from_env({"FENCEWATCH_TIMEZONE": ""})
    assert (defaults.tiles_url, defaults.tiles_crs) == (None, "wgs84")
    assert defaults.timezone == "Asia/Shanghai"
    with pytest.raises(ConfigError, match="FENCEWATCH_TILES_CRS must be one of wgs84, gcj02"):
        Settings.from_env({"FENCEWATCH_TILES_CRS": "bd09"})


async def test_the_api_serves_the_settings_it_is_given(pg_dsn: str, redis_url: str) -> None:
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    redis = Redis.from_url(redis_url)

    async def health() -> dict[str, bool]:
        return {}

    async def rules_changed(supervisees: list[str] | None) -> None:
        return None

    settings = Settings(tiles_url=TILES, tiles_crs="gcj02", tiles_attribution="© example")
    app = create_app(ApiContext(pool, redis, health, rules_changed, settings))
    try:
        token = await create_token(pool, "operator", None, subject="settings test")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fencewatch") as client:
            session = await client.get(
                "/api/v1/session", headers={"Authorization": f"Bearer {token}"}
            )
        assert session.status_code == 200, session.text
        assert session.json()["map"] == {
            "tiles": TILES,
            "tiles_crs": "gcj02",
            "subdomains": "abc",
            "attribution": "© example",
        }
    finally:
        await redis.aclose()
        await pool.close()
