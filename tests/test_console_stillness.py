"""The stillness note in the console (人机分离 signal b, supervision/stillness.py): a missed
check-in whose phone has sat still far longer than on its owner's usual days says so in the
queue, in Chromium, against the real service."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import expect

from geofence.judge import Judged
from geofence.model import Fix
from geofence.policy import Policy
from ingest.writer import commit
from supervision import checkins
from tests.kit import LIANDU
from tests.live import running
from tests.test_console import browser, log_in, require_build, zones
from tests.test_stillness import NOW, TZ, days


async def test_a_missed_check_in_says_the_phone_has_been_still_unusually_long(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    require_build()
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {
                "id": "S1",
                "name": "张某",
                "jurisdiction": [LIANDU],
                "devices": [{"id": "PH1", "kind": "phone", "owntracks": "s1/ph1"}],
            }
        ],
    }
    async with running(pg_dsn, redis_url, mqtt_url, zones(), roster) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        pool = live.service.pool
        r = await live.http.put(
            "/api/v1/supervisees/S1/checkin-schedule", json={"times": ["13:40"], "face": True}
        )
        assert r.status_code == 200, r.text
        # A week of the phone's fixes: out for 20 minutes every two hours, but today at home
        # since midnight; the check-in's face verification never comes.
        week = [
            Judged(Fix("PH1", n, ms, ms, lat, lon, acc=acc), "S1", Policy(), 0, 30.0)
            for n, (t, lat, lon, acc) in enumerate(days(2, today_still=True), 1)
            for ms in [int(t.timestamp() * 1000)]
        ]
        async with pool.acquire() as conn, conn.transaction():
            await commit(conn, week, [], {}, [], [])
            due = NOW - timedelta(minutes=20)
            await conn.execute(
                "INSERT INTO checkins (supervisee_id, due_at, deadline_at, kind, face)"
                " VALUES ('S1', $1, $2, 'fixed', true)",
                due,
                due + timedelta(minutes=15),
            )
            assert await checkins.settle(conn, NOW, TZ) == {"answered": 0, "missed": 1}
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            row = page.locator(".alert", has_text="签到未完成")
            await expect(row.locator(".type")).to_have_text(
                "签到未完成：手机已静止 6 小时（平时最长 1.7 小时）"
            )
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"
