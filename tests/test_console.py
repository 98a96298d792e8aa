"""Issue 7's end-to-end checks: the operator console in headless Chromium against the whole
service on the real PostgreSQL, Redis and Mosquitto. An operator logs in, watches a tag
move and walk out of 莲都区, works the alert from the keyboard (acknowledge, resolve with
a disposition), and plays back the person's track; an auditor sees the same queue with
no way to change it. Every request the page makes must go to the service itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.console import BUILD_HINT, STATIC
from api.tokens import create_token
from duties.scheduler import CheckIns
from tests.kit import DATA, LIANDU, LIANDU_SEAT, line, lishui_collection, offset
from tests.live import Live, eventually, running
from tests.test_live_ingest import walk_out

CHROMIUM = Path("/usr/bin/chromium")
DATAV_FILE = "lishui-331100-districts.geojson"
# The switches of a browser on an isolated network: nothing of its own goes out either.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=zh-CN",  # the browser's own widgets (date pickers) in Chinese too
]
WAIT_MS = 30_000  # an upper bound for "eventually", not a speed requirement
expect.set_options(timeout=WAIT_MS)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
)

SCHOOL = offset(LIANDU_SEAT, 0, 2500)  # 2.5 km north of the walk


def zones() -> dict[str, Any]:
    doc = lishui_collection()
    exclusion = {
        "type": "Feature",
        "properties": {"id": "X1", "kind": "exclusion", "name": "某小学", "radius": 300},
        "geometry": {"type": "Point", "coordinates": [SCHOOL[1], SCHOOL[0]]},
    }
    return {**doc, "features": [*doc["features"], exclusion]}


ROSTER = {
    "timezone": "Asia/Shanghai",
    "supervisees": [
        {
            "id": "S1",
            "name": "张某",
            "level": "strict",
            "jurisdiction": [LIANDU],
            "exclusion": ["X1"],
            "devices": ["T1"],
        },
        {"id": "S2", "name": "李某", "jurisdiction": [LIANDU], "devices": ["T2"]},
    ],
}


class OutsideRequests:
    """Every URL the page asked for that is not the service's own: the test fails on any."""

    def __init__(self, base: str) -> None:
        self.origin = urlsplit(base).netloc
        self.seen: list[str] = []

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.netloc != self.origin:
            self.seen.append(url)

    async def watch(self, context: BrowserContext) -> None:
        async def guard(route: Any) -> None:
            self.check(route.request.url)
            if urlsplit(route.request.url).netloc == self.origin:
                await route.continue_()
            else:
                await route.abort()

        await context.route("**/*", guard)
        context.on("request", lambda request: self.check(request.url))
        context.on("page", lambda page: page.on("websocket", lambda ws: self.check(ws.url)))


@asynccontextmanager
async def browser(
    live: Live, tmp_path: Path
) -> AsyncIterator[tuple[BrowserContext, OutsideRequests, list[str]]]:
    """A fresh Chromium profile; yields the context, its outside-request log and the page
    errors seen (both must stay empty)."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        outside = OutsideRequests(str(live.http.base_url))
        await outside.watch(context)
        # Counts the tones the page makes (WebAudio oscillators), to check the alarm sounds.
        await context.add_init_script(
            "window.tones = 0; const make = AudioContext.prototype.createOscillator;"
            " AudioContext.prototype.createOscillator = function () {"
            " window.tones += 1; return make.call(this); };"
        )
        errors: list[str] = []
        context.on("weberror", lambda e: errors.append(str(e.error)))
        context.set_default_timeout(WAIT_MS)
        try:
            yield context, outside, errors
        finally:
            await context.close()


async def log_in(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await expect(page.locator("header.top")).to_contain_text("监控中心")
    await expect(page.locator(".feed.up")).to_be_visible()


def marker(page: Page, supervisee: str) -> Any:
    return page.locator(f".pos[data-supervisee={supervisee}]")


def require_build() -> None:
    if not (STATIC / "index.html").is_file():
        pytest.fail(f"the console is not built: run `{BUILD_HINT}`")


async def test_operator_watches_a_breach_works_the_alert_and_plays_back_the_track(
    pg_dsn, redis_url, mqtt_url, tmp_path, shots
) -> None:
    require_build()
    fixes = walk_out()
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        base = str(live.http.base_url)
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        auditor = await create_token(live.service.pool, "auditor", subject="检察院")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, base, token)

            # A second person at home, whose tag reports a low battery and an opened strap.
            home = offset(LIANDU_SEAT, -1500, -800)
            now = int(time.time() * 1000)
            live.device.publish(
                "em/T2/loc",
                {
                    "v": 1,
                    "seq": 1,
                    "ts": now,
                    "lat": home[0],
                    "lon": home[1],
                    "acc": 12,
                    "batt": 9,
                    "strap": "open",
                },
            )

            # The tag appears and moves.
            live.device.publish("em/T1/loc", fixes[0])
            await expect(marker(page, "S1")).to_have_attribute("data-state", "ok")
            before = await marker(page, "S1").get_attribute("d")
            live.device.publish("em/T1/loc", fixes[8])
            await expect(marker(page, "S1")).not_to_have_attribute("d", before or "")

            # It walks out of 莲都区: the alert arrives, loud and red.
            for f in fixes[1:8] + fixes[9:]:
                live.device.publish("em/T1/loc", f)
            exit_row = page.locator(".alert", has_text="越界（离开执行地）")
            await expect(exit_row).to_contain_text("张某")
            await expect(page.locator(".alert[data-status=open]")).to_have_count(3)
            await expect(page.locator(".banner")).to_contain_text("3 条告警待签收")
            await expect(marker(page, "S1")).to_have_attribute("data-state", "breach")
            # 李某 is inside, but the opened strap (critical, worse than the low battery)
            # decides how the map draws them: not 正常, and named on the map.
            await expect(marker(page, "S2")).to_have_attribute("data-state", "tamper")
            await expect(page.locator(".person-label.state-tamper")).to_have_text("李某")
            await page.wait_for_function("window.tones > 0")
            await page.screenshot(path=shots / "live-map.png")

            # The procuratorate's auditor sees the queue but cannot change anything.
            watcher = await context.new_page()
            await log_in(watcher, base, auditor)  # sessionStorage is per tab
            await expect(watcher.locator(".alert[data-status=open]")).to_have_count(3)
            await expect(watcher.locator(".alert button.ack, .alert button.resolve")).to_have_count(
                0
            )
            await watcher.close()

            # Keyboard: most severe first (the opened strap), then the exit; acknowledge it,
            # then resolve it as a true violation with a note.
            for key in ("k", "k", "j"):
                await page.keyboard.press(key)
            await expect(page.locator(".alert.selected")).to_contain_text("越界（离开执行地）")
            await expect(page.locator(".alert").first).to_contain_text("防拆告警")
            await page.keyboard.press("a")
            await expect(exit_row).to_have_attribute("data-status", "acknowledged")
            await page.locator(".queue").screenshot(path=shots / "alert-queue.png")
            # r → a digit picks the disposition and moves on to the note, without typing the
            # digit into it; Esc leaves without resolving.
            dialog = page.locator(".resolve-dialog")
            await page.keyboard.press("r")
            await page.keyboard.press("4")
            await expect(dialog.locator("input[value=equipment_fault]")).to_be_checked()
            await expect(dialog.locator("textarea")).to_be_focused()
            await expect(dialog.locator("textarea")).to_have_value("")
            await page.keyboard.press("Escape")
            await expect(dialog).to_have_count(0)
            # 张某 is still in 青田: the dialog says so, and submitting first asks to confirm.
            note = "电话核实，本人承认未经批准前往青田，已责令立即返回"
            await page.keyboard.press("r")
            await expect(dialog.locator(".active-warning")).to_contain_text("张某仍在越界")
            await page.keyboard.press("1")
            await page.keyboard.type(note)
            await page.screenshot(path=shots / "resolve-dialog.png")
            await page.keyboard.press("Control+Enter")
            await expect(dialog.locator(".confirm-active")).to_contain_text("张某此刻仍在越界")
            [alert] = await live.alerts(supervisee="S1")
            assert alert["status"] == "acknowledged"
            await page.keyboard.press("Control+Enter")
            await expect(dialog).to_have_count(0)
            # Worked, but not over: the row stays, below the alerts still to work, as 仍在越界.
            await expect(exit_row).to_have_attribute("data-status", "resolved")
            await expect(exit_row.locator(".status")).to_have_text("仍在越界")
            await expect(exit_row).to_contain_text("已处置（属实违规）")
            await expect(page.locator(".alert").last).to_have_class(re.compile("still-breach"))
            await expect(page.locator(".banner")).to_contain_text("2 条告警待签收")
            await expect(marker(page, "S1")).to_have_attribute("data-state", "still_breach")
            [alert] = await live.alerts(supervisee="S1")
            assert (alert["status"], alert["active"]) == ("resolved", True)
            assert alert["disposition"] == "true_violation"
            assert alert["note"] == note

            # From the map to the person file, and the track played back.
            await marker(page, "S1").click()
            await page.locator(".leaflet-popup button").click()
            await expect(page.locator(".person-info h2")).to_have_text("张某")
            await expect(page.locator(".person-info")).to_contain_text("严管")
            await expect(page.locator(".history")).to_contain_text("属实违规")
            summary = page.locator(".track-summary")
            await expect(summary).to_contain_text(f"共 {len(fixes)} 个定位点")
            await expect(summary).to_contain_text("越界段")
            slider = page.locator(".track-slider")
            await slider.fill("0")
            await expect(page.locator(".track-current-info")).to_contain_text("区域内")
            await expect(page.locator(".track-current-info")).to_contain_text("#1")
            play = page.locator("button.play")
            await play.click()
            await expect(slider).not_to_have_value("0")
            await play.click()
            await slider.fill(str(len(fixes) - 1))
            await expect(page.locator(".track-current-info")).to_contain_text("区域外")
            await page.screenshot(path=shots / "person-file.png")

            # Zones: a DataV boundary file imported in GCJ-02, and a prohibition-order
            # circle drawn on the map with a night-time schedule.
            await page.locator("nav a[data-view=zones]").click()
            await page.set_input_files(".import input[type=file]", DATA / DATAV_FILE)
            await page.locator(".import button[type=submit]").click()
            await expect(page.locator(".toast", has_text="已导入 9 个区域")).to_be_visible()
            await page.locator(".draw button", has_text="画圆").click()
            await page.locator(".zones-map").click(position={"x": 400, "y": 300})
            await page.fill(".draw input[name=id]", "X2")
            await page.fill(".draw input[name=name]", "某网吧")
            await page.fill(".draw input[name=radius]", "500")
            await page.locator(".draw button", has_text="添加时段").click()
            await page.locator(".draw button[type=submit]").click()
            new_zone = page.locator(".zone-list li[data-zone-id=X2]")
            await expect(new_zone).to_contain_text("禁入区域")
            await expect(new_zone).to_contain_text("22:00–06:00")
            await page.screenshot(path=shots / "zones.png")
            zone = (await live.http.get("/api/v1/zones/X2")).json()["properties"]
            assert (zone["kind"], zone["radius"], zone["crs"]) == ("exclusion", 500, "wgs84")
            assert zone["schedule"] == [
                {"days": [1, 2, 3, 4, 5, 6, 7], "from": "22:00", "to": "06:00"}
            ]

            # English on request.
            await page.locator("button.lang").click()
            await expect(page.locator("header.top")).to_contain_text("Monitoring center")
            await expect(page.locator(".playback")).to_contain_text("Track playback")

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


async def test_the_queue_names_the_exclusion_zone_entered(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    require_build()
    # A walk from home into the school's exclusion circle, staying there: fixes 10 s apart,
    # ending now so the breach is a live one.
    t0 = int(time.time() * 1000) - 20 * 10_000
    fixes = line(LIANDU_SEAT, SCHOOL, 10, t0=t0, interval_s=10) + line(
        SCHOOL, SCHOOL, 10, t0=t0 + 100_000, interval_s=10, seq0=11
    )
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            for f in fixes:
                live.device.publish("em/T1/loc", {"v": 1, **f})
            row = page.locator(".alert", has_text="进入禁入区域")
            await expect(row.locator(".type")).to_have_text("进入禁入区域：某小学")
            [alert] = await live.alerts(supervisee="S1", type="exclusion_enter")
            assert alert["detail"]["zone"] == "X1" and alert["detail"]["zone_name"] == "某小学"
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


async def test_a_live_breach_resolved_as_a_false_alarm_stays_until_the_person_leaves(
    pg_dsn, redis_url, mqtt_url, tmp_path, shots
) -> None:
    """Issue 15.1: 张某 walks into the school's exclusion circle and stays. The operator
    resolves it as a false alarm: warned that 张某 is still in breach, asked why it is a
    false alarm, asked to confirm. The alert then stays, as 仍在越界, in the queue and on
    the map, until 张某 leaves the zone."""
    require_build()
    t0 = int(time.time() * 1000) - 20 * 10_000
    fixes = line(LIANDU_SEAT, SCHOOL, 10, t0=t0, interval_s=10) + line(
        SCHOOL, SCHOOL, 10, t0=t0 + 100_000, interval_s=10, seq0=11
    )
    street = offset(SCHOOL, 0, -800)
    leaving = line(SCHOOL, street, 4, t0=t0 + 200_000, interval_s=10, seq0=21) + line(
        street, street, 2, t0=t0 + 240_000, interval_s=10, seq0=25
    )
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            for f in fixes:
                live.device.publish("em/T1/loc", {"v": 1, **f})
            row = page.locator(".alert", has_text="进入禁入区域")
            await expect(row).to_have_attribute("data-status", "open")
            await expect(marker(page, "S1")).to_have_attribute("data-state", "breach")

            # r, then 2 (误报): the dialog warns first, and a false alarm asks why.
            dialog = page.locator(".resolve-dialog")
            await row.click()
            await page.keyboard.press("r")
            await expect(dialog.locator(".active-warning")).to_contain_text("张某仍在越界")
            await page.keyboard.press("2")
            reason = dialog.locator("select[name=reason]")
            await expect(reason).to_be_focused()
            await dialog.locator("textarea").fill("本人电话称在家，定位在学校附近反复跳动")
            await page.keyboard.press("Control+Enter")
            await expect(dialog.locator(".error")).to_have_text("本人仍在越界：判为误报须选择原因")
            await reason.select_option("position_drift")
            await page.keyboard.press("Control+Enter")
            await expect(dialog.locator(".confirm-active")).to_contain_text("张某此刻仍在越界")
            await expect(dialog.locator("button[type=submit]")).to_have_text(
                "确认处置（本人仍在越界）"
            )
            await page.screenshot(path=shots / "resolve-still-in-breach.png")
            await dialog.locator("button[type=submit]").click()
            await expect(dialog).to_have_count(0)

            # Resolved, yet the service still sees 张某 in the zone: 仍在越界, not gone.
            await expect(row).to_have_class(re.compile("still-breach"))
            await expect(row.locator(".status")).to_have_text("仍在越界")
            await expect(row).to_contain_text("已处置（误报：定位漂移）")
            await expect(row.locator("button.resolve")).to_have_count(0)
            await expect(page.locator(".banner")).to_be_hidden()
            await expect(marker(page, "S1")).to_have_attribute("data-state", "still_breach")
            await expect(page.locator(".person-label.state-still_breach")).to_have_text("张某")
            await page.screenshot(path=shots / "still-in-breach.png")
            [alert] = await live.alerts(supervisee="S1", type="exclusion_enter")
            assert (alert["status"], alert["active"], alert["reason"]) == (
                "resolved",
                True,
                "position_drift",
            )

            # A reload keeps it: the console asks for breaches resolved but still active.
            await page.reload()
            await expect(page.locator(".feed.up")).to_be_visible()
            await expect(row.locator(".status")).to_have_text("仍在越界")

            # 张某 leaves the zone: the breach is over and the row goes.
            for f in leaving:
                live.device.publish("em/T1/loc", {"v": 1, **f})
            await expect(row).to_have_count(0)
            await expect(marker(page, "S1")).not_to_have_attribute("data-state", "still_breach")
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


async def test_the_page_is_locked_to_the_service_and_the_feed_to_the_token(
    pg_dsn, redis_url, mqtt_url
) -> None:
    """The Content Security Policy stops the browser itself from loading anything from
    elsewhere; the feed wants a valid token and relays only the token's own people."""
    require_build()
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        page = await live.http.get("/")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp
        feed_url = str(live.http.base_url).replace("http://", "ws://") + "/api/v1/feed"

        async with connect(feed_url) as ws:
            await ws.send(json.dumps({"token": "fw_not-a-token"}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT_MS / 1000)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        # 李某 (S2) moves to a justice station; its officer sees only 李某.
        r = await live.http.put(
            "/api/v1/offices/ST1", json={"name": "紫金司法所", "kind": "station"}
        )
        r.raise_for_status()
        r = await live.http.put(
            "/api/v1/supervisees/S2",
            json={"name": "李某", "office": "ST1", "jurisdiction": [LIANDU]},
        )
        r.raise_for_status()
        officer = await create_token(live.service.pool, "officer", office="ST1")
        async with connect(feed_url) as ws:
            await ws.send(json.dumps({"token": officer}))
            assert json.loads(await ws.recv())["kind"] == "hello"
            now = int(time.time() * 1000)
            for device in ("T1", "T2"):
                fix = {"v": 1, "seq": 1, "ts": now, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1]}
                live.device.publish(f"em/{device}/loc", fix)
            message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_MS / 1000))
        assert message["kind"] == "positions"
        assert [p["supervisee"] for p in message["items"]] == ["S2"]


async def test_locate_now_from_the_queue_shows_the_tags_answer_on_the_persons_map(
    pg_dsn, redis_url, mqtt_url, tmp_path, shots
) -> None:
    require_build()
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        # The test is tag T1: it answers a locate command with a fix, as its firmware does.
        asked: list[bytes] = []
        live.device.client.on_message = lambda client, userdata, message: asked.append(
            message.payload
        )
        live.device.client.subscribe("em/T1/cmd", qos=1)
        now = int(time.time() * 1000)
        live.device.publish("em/T1/loc", {"v": 1, "seq": 1, "ts": now, **_at(LIANDU_SEAT)})
        live.device.publish("em/T1/evt", {"v": 1, "seq": 2, "ts": now, "type": "sos"})
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            row = page.locator(".alert", has_text="紧急求助")
            await row.locator("button.locate").click()
            panel = page.locator(".person-info .locate")
            await expect(panel.locator("li[data-device=T1]")).to_contain_text("等待回传")

            async def sent() -> list[bytes]:
                return asked

            await eventually(sent, "no command reached the tag")
            command = json.loads(asked[0])
            assert command["type"] == "locate"
            here = offset(LIANDU_SEAT, 300, 0)
            live.device.publish(
                "em/T1/loc", {"v": 1, "seq": 3, "ts": int(time.time() * 1000), **_at(here)}
            )
            await expect(panel.locator("li[data-device=T1]")).to_have_attribute(
                "data-answered", "yes"
            )
            await expect(panel).to_contain_text("精度 8 米")
            await expect(page.locator(".track-map .locate-answer")).to_be_visible()
            await page.screenshot(path=shots / "locate-now.png")
            [alert] = await live.alerts(supervisee="S1", type="sos")
            timeline = (await live.http.get(f"/api/v1/alerts/{alert['id']}")).json()["timeline"]
            assert {"locate", "located"} <= {e["action"] for e in timeline}
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


def _at(point: tuple[float, float]) -> dict[str, Any]:
    return {"lat": round(point[0], 6), "lon": round(point[1], 6), "acc": 8.0}


async def test_the_queue_explains_a_phone_left_at_home(
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
                "devices": ["T1", {"id": "PH1", "kind": "phone", "owntracks": "s1/ph1"}],
            }
        ],
    }
    away = offset(LIANDU_SEAT, 2000, 0)
    now = int(time.time() * 1000)
    async with running(pg_dsn, redis_url, mqtt_url, zones(), roster) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            # Together at home; then for twenty minutes the tag is 2 km off while the phone
            # still pings from home every ten.
            for seq, (ago_s, tag_at) in enumerate(
                [(1300, LIANDU_SEAT), (1210, away), (610, away), (10, away)], start=1
            ):
                ts = now - ago_s * 1000
                live.device.publish("em/T1/loc", {"v": 1, "seq": seq, "ts": ts, **_at(tag_at)})
                phone = {"_type": "location", "tst": ts // 1000 + 5, "acc": 20, "t": "p"}
                phone |= {"lat": round(LIANDU_SEAT[0], 6), "lon": round(LIANDU_SEAT[1], 6)}
                live.device.publish("owntracks/s1/ph1", phone)
            row = page.locator(".alert", has_text="人机分离")
            await expect(row.locator(".type")).to_have_text("人机分离：PH1 距本人（T1）2.0 公里")
            [alert] = await live.alerts(supervisee="S1", type="device_separation")
            assert alert["device"] == "PH1" and alert["late"] is False
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


async def test_the_person_file_shows_the_check_in_calendar_and_rate(
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
    tz = ZoneInfo("Asia/Shanghai")
    now = datetime.now(tz).replace(second=0, microsecond=0)
    first, second = now - timedelta(minutes=40), now - timedelta(minutes=20)
    async with running(pg_dsn, redis_url, mqtt_url, zones(), roster) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        duty, pool = CheckIns(live.service.settings), live.service.pool
        # The phone answers the first; the second finds it silent. Its fix is stored before
        # there is a schedule: the service's own check-in duty settles at the real time,
        # well past the first's deadline, and would find it missed were the fix not in yet.
        ts = int(first.timestamp()) + 30
        fix = {"_type": "location", "tst": ts, "acc": 12, "t": "r"}
        live.device.publish("owntracks/s1/ph1", fix | _at(LIANDU_SEAT) | {"acc": 12})

        async def stored() -> int:
            return int(await pool.fetchval("SELECT count(*) FROM fixes"))

        await eventually(stored, "the phone's fix was not stored")
        times = [first.strftime("%H:%M"), second.strftime("%H:%M")]
        r = await live.http.put(
            "/api/v1/supervisees/S1/checkin-schedule", json={"times": times, "deadline_s": 600}
        )
        assert r.status_code == 200, r.text
        await duty.run(pool, first)
        await duty.run(pool, second)
        await duty.run(pool, second + timedelta(minutes=11))
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            await page.goto(f"{live.http.base_url}/#/person/S1")
            calendar = page.locator(".person-info .checkins")
            await expect(calendar.locator(".rate")).to_have_text("签到率 50%（完成 1，未完成 1）")
            await expect(calendar.locator(".checkin.answered")).to_contain_text(times[0])
            await expect(calendar.locator(".checkin.missed")).to_contain_text(times[1])
            title = await calendar.locator(".checkin.missed").get_attribute("title")
            assert title == "未签到：手机无定位回传"
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


async def test_the_person_file_shows_whom_the_person_must_keep_away_from(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    require_build()
    site = {"lat": 28.45, "lon": 119.92, "radius_m": 150, "name": "建筑工地"}
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {"id": "S1", "name": "张某", "jurisdiction": [LIANDU], "workplace": site},
            {"id": "S2", "name": "李某", "jurisdiction": [LIANDU]},
        ],
        "no_contact": [{"id": "NC1", "people": ["S1", "S2"], "distance_m": 200}],
        "protected": [
            {
                "id": "PP1",
                "supervisee": "S1",
                "device": {"id": "V1", "kind": "phone", "owntracks": "victim/phone"},
                "sms": "+8613900000017",
            }
        ],
    }
    async with running(pg_dsn, redis_url, mqtt_url, zones(), roster) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            await page.goto(f"{live.http.base_url}/#/person/S1")
            info = page.locator(".person-info")
            await expect(info).to_contain_text("工作单位建筑工地（半径 150 米）")
            apart = info.locator(".apart")
            await expect(apart.locator("[data-no-contact=NC1] .what")).to_have_text(
                "禁止接触令 NC1：与 李某（S2） 保持 200 米以上（持续 5 分钟即告警）"
            )
            # The protected person's phone and number (its last four digits), never where.
            await expect(apart.locator("[data-protected=PP1] .what")).to_have_text(
                "被保护人 PP1：手机 V1（OwnTracks），500 米内持续 60 秒即告警 · 短信预警"
                " **********0017"
            )
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"
