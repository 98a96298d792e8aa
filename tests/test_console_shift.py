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

from api.tokens import create_token
from fencewatch.timefmt import iso
from tests.kit import (
    JINYUN,
    LIANDU,
    LIANDU_SEAT,
    QINGTIAN,
    border_crossing,
    line,
    lishui_collection,
    offset,
    qingtian_point,
)
from tests.live import Live, running
from tests.test_console import browser, log_in, pytestmark, require_build
from tests.test_live_ingest import walk_out

__all__ = ["pytestmark"]  # Chromium as in tests/test_console.py

# Redis pub/sub ignores database numbers: tests of other processes on the same Redis feed
# this console their positions and alerts too. These ids are this file's own, and every
# check names the person it is about.
# 莲都区司法局 and its 紫金司法所 (the roster's optional offices), where both people are
# supervised; 孙某五 is 张某甲's responsible officer.
OFFICES = [
    {
        "id": "LD",
        "name": "莲都区司法局",
        "kind": "county",
        "officers": [{"id": "LD-01", "name": "郭某三", "role": "head"}],
    },
    {
        "id": "LD-ZJ",
        "name": "紫金司法所",
        "kind": "station",
        "parent": "LD",
        "officers": [{"id": "LD-ZJ-01", "name": "孙某五", "phone": "13900000005"}],
    },
]
ROSTER = {
    "timezone": "Asia/Shanghai",
    "offices": OFFICES,
    "supervisees": [
        {
            "id": "S1501",
            "name": "张某甲",
            "office": "LD-ZJ",
            "officer": "LD-ZJ-01",
            "jurisdiction": [LIANDU],
            "devices": ["T1501"],
        },
        {
            "id": "S1502",
            "name": "李某乙",
            "office": "LD-ZJ",
            "jurisdiction": [LIANDU],
            "devices": ["T1502"],
        },
    ],
}
# Every oscillator the page starts, so a test can tell the tones apart by pitch.
RECORD_TONES = (
    "window.oscillators = []; const start = OscillatorNode.prototype.start;"
    " OscillatorNode.prototype.start = function (...args) {"
    " window.oscillators.push(this.frequency.value); return start.apply(this, args); };"
)


H_MS = 3_600_000


SIREN = [1320, 990] * 3
SIREN_HEARD = f"window.oscillators.some((_, i, all) => {SIREN}.every((p, k) => all[i + k] === p))"


def siren_in(tones: list[float]) -> bool:
    return any(tones[i : i + len(SIREN)] == SIREN for i in range(len(tones)))


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
                live.device.publish("em/T1501/loc", f)
            high_row = ".alert.sev-high:has-text('张某甲')"
            await expect(page.locator(high_row)).to_contain_text("越界（离开执行地）")
            await page.wait_for_function("window.oscillators.includes(880)")
            # The selected alert says who has it: the responsible officer, by name.
            told = page.locator(".alert.selected .notified")
            await expect(told).to_have_text("已通知：孙某五")
            assert not siren_in(await pitches(page))

            # Later, 李某乙's strap is opened: 紧急, raised after the breach but on top.
            strap_open(live, "T1502")
            critical_row = ".alert.sev-critical:has-text('李某乙')"
            await expect(page.locator(critical_row)).to_contain_text("防拆告警")
            rows = page.locator(".alert:has-text('张某甲'), .alert:has-text('李某乙')")
            await expect(rows.first).to_contain_text("李某乙")
            await expect(page.locator(".banner")).to_contain_text(re.compile(r"紧急 \d+ 条"))
            # A siren: six pulses alternating two higher pitches, not the breach's two beeps.
            await page.wait_for_function(SIREN_HEARD)
            assert siren_in(await pitches(page))

            # Red for 紧急, orange for 高; the critical row is tinted and edged wider.
            red, orange = "rgb(220, 38, 38)", "rgb(234, 88, 12)"
            assert await style(page, f"{critical_row} .sev", "background-color") == red
            assert await style(page, f"{high_row} .sev", "background-color") == orange
            # A new row flashes for a few seconds; its own colour shows once that is over.
            for row in (critical_row, high_row):
                await page.locator(row).first.evaluate(
                    "el => Promise.all(el.getAnimations().map(a => a.finished.catch(() => null)))"
                )
            assert await style(page, critical_row, "background-color") != (
                await style(page, high_row, "background-color")
            )
            wide = await style(page, critical_row, "border-left-width")
            narrow = await style(page, high_row, "border-left-width")
            assert float(wide.removesuffix("px")) > float(narrow.removesuffix("px"))

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


def stays_in_qingtian() -> list[dict[str, Any]]:
    """Across the border into 青田 (a fix every 10 s), then 20 minutes at one place there
    (a fix a minute), ending now: on leave elsewhere, that stop is a breach."""
    t0 = int(time.time() * 1000) - 26 * 60_000
    border = border_crossing(LIANDU_SEAT, qingtian_point(), LIANDU)
    step = line(border, qingtian_point(), 100)[14]
    there = (step["lat"], step["lon"])  # about a kilometre past the border
    go = line(LIANDU_SEAT, border, 15, t0=t0, interval_s=10)
    go += line(border, there, 15, t0=t0 + 150_000, interval_s=10, seq0=16)
    stay = line(there, there, 21, t0=go[-1]["ts"] + 60_000, interval_s=60, seq0=31)
    return [{"v": 1, **f} for f in go + stay]


async def inside(page: Page, selector: str, box: dict[str, float]) -> bool:
    """Whether the element is drawn within `box` (an element's bounding box)."""
    found = await page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not drawn"
    return (
        box["x"] <= found["x"] + found["width"] / 2 <= box["x"] + box["width"]
        and box["y"] <= found["y"] + found["height"] / 2 <= box["y"] + box["height"]
    )


async def test_playback_shows_the_allowed_area_the_leave_and_where_the_crossing_was(
    pg_dsn, redis_url, mqtt_url, tmp_path, shots
) -> None:
    require_build()
    fixes = stays_in_qingtian()
    now = int(time.time() * 1000)
    # 张某甲 is on leave to 缙云 today, but goes to 青田 instead and stays there.
    on_leave = {
        **ROSTER["supervisees"][0],
        "leaves": [{"from": iso(now - H_MS), "to": iso(now + 48 * H_MS), "destinations": [JINYUN]}],
    }
    roster = {**ROSTER, "supervisees": [on_leave, ROSTER["supervisees"][1]]}
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), roster) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            for f in fixes:
                live.device.publish("em/T1501/loc", f)
            await expect(page.locator(".alert.sev-high:has-text('张某甲')")).to_contain_text(
                "越界（离开执行地）"
            )
            track = await live.track(
                "S1501", iso(fixes[0]["ts"] - 1000), iso(fixes[-1]["ts"] + 1000)
            )
            states = [f["properties"]["zone_state"] for f in track]
            first_out = states.index("out")
            last_in = max(i for i in range(first_out) if states[i] == "in")
            seq = [f["properties"]["seq"] for f in track]

            await page.evaluate("location.hash = '#/person/S1501'")
            summary = page.locator(".track-summary")
            await expect(summary).to_contain_text(f"共 {len(fixes)} 个定位点")
            # The file is whole: this month's score, nothing "to come" (待接入).
            await expect(page.locator(".person-info .assessment")).to_contain_text("100 分")
            await expect(page.locator(".person-info")).not_to_contain_text("待接入")

            # The leave's destination is drawn and named; the view holds the track, 莲都区
            # (the jurisdiction) and 缙云 (the destination) together.
            labels = page.locator(".track-map .destination-label")
            await expect(labels).to_have_text(["外出目的地：缙云县"])
            await expect(page.locator(".track-map path.leave-destination")).to_have_count(1)
            view = await page.locator(".track-map").bounding_box()
            assert view is not None
            assert await inside(page, ".track-map .zone-label >> text=莲都区", view)
            assert await inside(page, ".track-map .destination-label", view)
            assert await inside(page, ".track-map .track-current", view)
            await page.screenshot(path=shots / "track-playback.png")

            # An 8 m accuracy circle is far under a pixel at this zoom, yet drawn visibly;
            # the toggle hides the circles and brings them back.
            ring = page.locator(".track-map .track-current-acc")
            box = await ring.bounding_box()
            assert box is not None and box["width"] >= 10
            await page.locator(".show-acc").uncheck()
            await expect(ring).to_have_count(0)
            await page.locator(".show-acc").check()
            await expect(ring).to_have_count(1)

            # Where it crossed: the last fix inside and the first outside, on the map and in
            # words; a click closes in on it and shows the fix.
            crossing = page.locator(".track-crossings")
            await expect(crossing).to_contain_text(f"最后区域内 #{seq[last_in]}")
            await expect(crossing).to_contain_text(f"首个区域外 #{seq[first_out]}")
            await expect(page.locator(".track-map .crossing-in")).to_have_count(1)
            await expect(page.locator(".track-map .crossing-out")).to_have_count(1)
            assert await inside(page, ".track-map .crossing-out", view)
            await crossing.locator("button.crossing-out").click()
            current = page.locator(".track-current-info")
            await expect(current).to_contain_text(f"#{seq[first_out]}")
            await expect(current).to_contain_text("区域外")
            await page.locator(".track-map .crossing-in").click()
            await expect(current).to_contain_text(f"#{seq[last_in]}")
            await expect(current).to_contain_text("区域内")

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


OFFICER = "紫金司法所 王某某"


async def test_operators_read_the_leave_list_and_its_chain_officers_change_it(
    pg_dsn, redis_url, mqtt_url, tmp_path, shots
) -> None:
    require_build()
    now = int(time.time() * 1000)
    day = 24 * H_MS
    away = {"from": iso(now - H_MS), "to": iso(now + 2 * day), "destinations": [JINYUN]}
    late = {"from": iso(now - 3 * day), "to": iso(now - day), "destinations": [QINGTIAN]}
    people = ROSTER["supervisees"]
    roster = {
        **ROSTER,
        "supervisees": [{**people[0], "leaves": [away]}, {**people[1], "leaves": [late]}],
    }
    async with running(pg_dsn, redis_url, mqtt_url, lishui_collection(), roster) as live:
        base = str(live.http.base_url)
        operator = live.http.headers["Authorization"].removeprefix("Bearer ")
        officer = await create_token(live.service.pool, "officer", office="LD-ZJ", subject=OFFICER)
        as_officer = {"Authorization": f"Bearer {officer}"}

        async def apply(person: str, start: int, approve: bool) -> str:
            body = {
                "from": iso(now + start * day),
                "to": iso(now + (start + 2) * day),
                "destinations": [JINYUN],
                "reason": "探亲",
                "approve": approve,
            }
            url = f"/api/v1/supervisees/{person}/leaves"
            r = await live.http.post(url, json=body, headers=as_officer)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        soon = await apply("S1501", 3, approve=True)
        asked = await apply("S1502", 7, approve=False)

        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, base, operator)
            await page.keyboard.press("4")
            lists = {
                name: page.locator(f".leave-section[data-list={name}]")
                for name in ("active", "upcoming", "overdue", "requested")
            }
            await expect(lists["active"].locator(".leave-row")).to_have_count(1)
            await expect(lists["active"]).to_contain_text("张某甲")
            await expect(lists["active"]).to_contain_text("缙云县")
            await expect(lists["active"].locator(".chain")).to_contain_text("名册导入")
            upcoming = lists["upcoming"].locator(f"[data-leave-id='{soon}'] .chain")
            await expect(upcoming).to_contain_text(f"申请 {OFFICER}")
            await expect(upcoming).to_contain_text("须由司法所审批")
            await expect(upcoming).to_contain_text(f"批准 {OFFICER}")
            await expect(lists["overdue"]).to_contain_text("李某乙")
            await expect(lists["overdue"]).to_contain_text("逾期未销假")
            await expect(lists["requested"].locator(f"[data-leave-id='{asked}']")).to_contain_text(
                "等待审批"
            )
            # Read-only for the operator: no buttons, and the API refuses them as well.
            await expect(page.locator(".leave-view")).to_contain_text(
                "外出由司法所或县级司法局审批登记"
            )
            await expect(page.locator(".leave-view .actions button")).to_have_count(0)
            await expect(page.locator(".leave-view form")).to_have_count(0)
            await page.screenshot(path=shots / "leave-list.png")
            overdue_id = await lists["overdue"].locator(".leave-row").get_attribute("data-leave-id")
            for path, body in (
                (f"{asked}/approve", {}),
                (f"{asked}/refuse", {"reason": "不符合条件"}),
                (f"{overdue_id}/return", None),
            ):
                r = await live.http.post(f"/api/v1/leaves/{path}", json=body)
                assert r.status_code == 403, r.text

            # The officer approves the request and records 销假 for the overdue leave.
            desk = await context.new_page()
            await log_in(desk, base, officer)
            await desk.keyboard.press("4")
            row = desk.locator(f".leave-section[data-list=requested] [data-leave-id='{asked}']")
            await row.locator("button.approve").click()
            moved = desk.locator(f".leave-section[data-list=upcoming] [data-leave-id='{asked}']")
            await expect(moved.locator(".chain")).to_contain_text(f"批准 {OFFICER}")
            await expect(
                desk.locator(".leave-section[data-list=requested] .leave-row")
            ).to_have_count(0)
            late_row = desk.locator(".leave-section[data-list=overdue] .leave-row")
            await late_row.locator("button.return").click()
            await expect(late_row).to_have_count(0)
            r = await live.http.get(f"/api/v1/leaves/{overdue_id}")
            assert r.json()["returned_at"] is not None and r.json()["overdue"] is False
            assert (await live.http.get(f"/api/v1/leaves/{asked}")).json()["approved_by"] == OFFICER

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"
