"""The 丽水 demo (simulators.demo) as an operator first meets it, in headless Chromium,
against the whole service on the real PostgreSQL, Redis and Mosquitto: the demo's fleet
plays live, a named person walks out of 莲都区 and the alert says which officer was told;
their file shows their station, officer, monitoring order and this month's score; the
track plays back with where they crossed; the leave list shows who is away. The README's
screenshots are this test's (FENCEWATCH_SCREENSHOTS=docs/screenshots).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from playwright.async_api import expect

from simulators.demo import build_demo
from simulators.device import FleetPlan
from simulators.fleet import run_fleet
from tests.live import running
from tests.test_console import browser, log_in, pytestmark, require_build

__all__ = ["pytestmark"]  # Chromium as in tests/test_console.py

TAGS = 10  # the demo's first ten recipes: all ankle tags, no phone or wristband
INTERVAL_S = 10.0  # as `fencewatch demo` plays it (fencewatch.service.DEMO_INTERVAL_S)
HISTORY_S = 120.0  # and, as there, its first two minutes arrive at once
FIRST_ALERT_MS = 180_000  # an upper bound for "the first minutes", not a speed requirement


@asynccontextmanager
async def playing(mqtt_url: str, plan: FleetPlan) -> AsyncIterator[None]:
    stop = asyncio.Event()
    fleet = asyncio.create_task(
        run_fleet(mqtt_url, plan, stop, interval_s=INTERVAL_S, history_s=HISTORY_S)
    )
    try:
        yield
    finally:
        stop.set()
        await fleet


def people(roster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in roster["supervisees"]}


def officer_of(roster: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
    return next(
        o
        for office in roster["offices"]
        for o in office["officers"]
        if o["id"] == person["officer"]
    )


async def test_the_demo_has_named_people_officers_orders_and_leave(
    pg_dsn, redis_url, mqtt_url, tmp_path, shots
) -> None:
    require_build()
    zones, roster, plan = build_demo(TAGS)
    walker = people(roster)["S001"]  # simulators.demo: the first walks out of 莲都区
    on_leave = people(roster)["S004"]  # the fourth is on leave in 青田, the seventh
    # leaves soon and the eighth never reported back (simulators.demo.MORE_LEAVE)
    station = next(o["name"] for o in roster["offices"] if o["id"] == walker["office"])
    async with (
        running(pg_dsn, redis_url, mqtt_url, zones, roster) as live,
        playing(mqtt_url, plan),
        browser(live, tmp_path) as (context, outside, errors),
    ):
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        page = await context.new_page()
        await log_in(page, str(live.http.base_url), token)

        row = page.locator(".alert", has_text=walker["name"]).filter(has_text="越界（离开执行地）")
        await expect(row).to_be_visible(timeout=FIRST_ALERT_MS)
        await row.click()
        await expect(row.locator(".notified")).to_have_text(
            f"已通知：{officer_of(roster, walker)['name']}"
        )
        await page.screenshot(path=shots / "demo-live-map.png")
        await page.locator(".queue").screenshot(path=shots / "demo-alert-queue.png")

        # Their file: a station and an officer by name, an order, a score; no 待接入.
        await page.keyboard.press("o")
        info = page.locator(".person-info")
        await expect(info.locator("h2")).to_have_text(walker["name"])
        await expect(info).to_contain_text(station)
        await expect(info).to_contain_text(officer_of(roster, walker)["name"])
        await expect(info.locator(".orders")).to_contain_text(
            "无正当理由，未经批准离开所居住的市、县"
        )
        await expect(info.locator(".assessment")).to_contain_text("100 分")
        await expect(info).not_to_contain_text("待接入")
        crossing = page.locator(".track-crossings button.crossing-out")
        await crossing.first.click()
        await expect(page.locator(".track-current-info")).to_contain_text("区域外")
        await page.screenshot(path=shots / "demo-person-file.png")

        # The leave list: the person on leave in 青田 is away now.
        await page.keyboard.press("4")
        away = page.locator(".leave-section[data-list=active]")
        await expect(away).to_contain_text(on_leave["name"])
        await expect(away).to_contain_text("青田县")
        soon = page.locator(".leave-section[data-list=upcoming]")
        await expect(soon).to_contain_text(people(roster)["S007"]["name"])
        late = page.locator(".leave-section[data-list=overdue]")
        await expect(late).to_contain_text(people(roster)["S008"]["name"])
        await page.screenshot(path=shots / "demo-leave-list.png")

        assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
        assert errors == [], f"errors in the page: {errors}"
