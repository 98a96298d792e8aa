"""The person file reached from the navigation, not from an alert, in headless Chromium:
an officer who just logged in picks a person from the file's list and sees their file."""

from __future__ import annotations

from playwright.async_api import expect

from tests.live import running
from tests.test_console import ROSTER, browser, log_in, pytestmark, require_build, zones

__all__ = ["pytestmark"]  # Chromium as in tests/test_console.py


async def test_the_person_file_lists_everyone_before_any_alert(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    require_build()
    async with (
        running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live,
        browser(live, tmp_path) as (context, outside, errors),
    ):
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        page = await context.new_page()
        await log_in(page, str(live.http.base_url), token)

        await page.keyboard.press("2")  # 一人一档, straight after logging in
        picker = page.locator("select.picker")
        await expect(picker.locator("option")).to_have_text(
            ["选择社区矫正对象", "张某 (S1)", "李某 (S2)"]
        )
        await picker.select_option("S2")
        await expect(page.locator(".person-info h2")).to_have_text("李某")

        assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
        assert errors == [], f"errors in the page: {errors}"
