"""Issue 15's shift checks in headless Chromium, against the whole service on the real
PostgreSQL, Redis and Mosquitto: 紧急 looks, sits and sounds more urgent than 高; a track
plays back in its context (the allowed area, the leave destinations, where the crossing
happened, accuracy circles that stay visible); operators read the leave list and its
approval chain but cannot change it. Every request the page makes goes to the service.
"""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.async_api import Page, expect

from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection, offset
from tests.live import Live, running
from tests.test_console import browser, log_in, require_build
from tests.test_live_ingest import walk_out

ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {"id": "S1", "name": "张某甲", "jurisdiction": [LIANDU], "devices": ["T1"]},
        {"id": "S2", "name": "李某乙", "jurisdiction": [LIANDU], "devices": ["T2"]},
    ],
}
# Every oscillator the page starts, so a test can tell the tones apart by pitch.
RECORD_TONES = (
    "window.oscillators = []; const start = OscillatorNode.prototype.start;"
    " OscillatorNode.prototype.start = function (...args) {"
    " window.oscillators.push(this.frequency.value); return start.apply(this, args); };"
)


async def pitches(page: Page) -> list[float]:
    return list(await page.evaluate("window.oscillators"))


async def style(page: Page, selector: str, prop: str) -> str:
    return str(
        await page.locator(selector).first.evaluate(
            f"(el) => getComputedStyle(el).getPropertyValue({prop!r})"
        )
    )


def strap_open(live: Live, device: str) -> None:
    home = offset(LIANDU_SEAT, -1500, -800)
    now = int(time.time() * 1000)
    fix: dict[str, Any] = {"v": 1, "seq": 1, "ts": now, "lat": home[0], "lon": home[1]}
    live.device.publish(f"em/{device}/loc", {**fix, "acc": 12, "batt": 80, "strap": "open"})


async def test_critical_outranks_high_in_colour_position_and_sound(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    require_build()
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), ROSTER) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            await context.add_init_script(RECORD_TONES)
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)

            # 张某甲 walks out of 莲都区: a 高 alert, two beeps at one pitch.
            for f in walk_out():
                live.device.publish("em/T1/loc", f)
            high = page.locator(".alert.sev-high")
            await expect(high).to_contain_text("越界（离开执行地）")
            await page.wait_for_function("window.oscillators.length >= 2")
            assert set(await pitches(page)) == {880}
            await expect(page.locator(".banner")).not_to_contain_text("紧急")

            # Later, 李某乙's strap is opened: 紧急, raised after the breach but on top.
            heard = len(await pitches(page))
            strap_open(live, "T2")
            critical = page.locator(".alert.sev-critical")
            await expect(critical).to_contain_text("防拆告警")
            await expect(page.locator(".alert").first).to_have_class(re.compile("sev-critical"))
            await expect(page.locator(".banner")).to_contain_text("紧急 1 条")
            # A siren: more pulses than the breach's beeps, alternating two higher pitches.
            await page.wait_for_function(f"window.oscillators.length >= {heard + 6}")
            siren = (await pitches(page))[heard : heard + 6]
            assert set(siren) == {1320, 990} and siren[0] != siren[1]

            # Red for 紧急, orange for 高; the critical row is tinted and edged wider.
            red, orange = "rgb(220, 38, 38)", "rgb(234, 88, 12)"
            assert await style(page, ".alert.sev-critical .sev", "background-color") == red
            assert await style(page, ".alert.sev-high .sev", "background-color") == orange
            assert await style(page, ".alert.sev-critical", "background-color") != (
                await style(page, ".alert.sev-high", "background-color")
            )
            wide = await style(page, ".alert.sev-critical", "border-left-width")
            narrow = await style(page, ".alert.sev-high", "border-left-width")
            assert float(wide.removesuffix("px")) > float(narrow.removesuffix("px"))

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"
