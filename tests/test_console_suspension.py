"""Issue 15.11 in the console, in headless Chromium against the whole service on the real
PostgreSQL, Redis and Mosquitto: an officer asks in the person file for the breach alerts
of someone in hospital to be suspended (暂停告警), a supervisor of the county approves it,
the person's tag walks out of 莲都区 and the queue shows the alert as 已暂停 with the
reason and when it resumes; the officer revokes it and the alert is released. Nothing the
page asks for leaves the service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Dialog, Page, expect

from api.routes.suspensions import HOLDABLE
from api.tokens import create_token
from tests.live import eventually, running
from tests.test_console import (
    ROSTER,
    browser,
    log_in,
    pytestmark,
    require_build,
    zones,
)
from tests.test_live_ingest import walk_out

__all__ = ["pytestmark"]  # Chromium as in tests/test_console.py


async def open_file(page: Page, base: str, supervisee: str) -> None:
    await page.goto(f"{base}/#/person/{supervisee}")
    await expect(page.locator(".person-info h2")).to_contain_text("张某")


async def test_an_officer_suspends_alerts_a_supervisor_approves_and_the_queue_shows_it_held(
    pg_dsn: Any, redis_url: Any, mqtt_url: Any, tmp_path: Path, shots: Path
) -> None:
    require_build()
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        base = str(live.http.base_url)
        # 张某 (S1) belongs to 紫金司法所 under 莲都区司法局.
        for office, body in (
            ("K1", {"name": "莲都区司法局", "kind": "county"}),
            ("ST1", {"name": "紫金司法所", "kind": "station", "parent": "K1"}),
        ):
            (await live.http.put(f"/api/v1/offices/{office}", json=body)).raise_for_status()
        person = {
            "name": "张某",
            "office": "ST1",
            "jurisdiction": ROSTER["supervisees"][0]["jurisdiction"],
            "exclusion": ["X1"],
        }
        (await live.http.put("/api/v1/supervisees/S1", json=person)).raise_for_status()
        pool = live.service.pool
        officer = await create_token(pool, "officer", office="ST1", subject="王警官")
        supervisor = await create_token(pool, "supervisor", office="K1", subject="赵科长")

        async with browser(live, tmp_path) as (context, outside, errors):
            # The officer asks: breach alerts only, in hospital, the default three days.
            page = await context.new_page()
            await log_in(page, base, officer)
            await open_file(page, base, "S1")
            form = page.locator(".suspend-form")
            # Every type the service can hold is offered (人机分离 and 签到未完成 too), each
            # by its Chinese name.
            offered = form.locator("input[name=type]")
            await expect(offered).to_have_count(len(HOLDABLE))
            assert sorted(await offered.evaluate_all("bs => bs.map(b => b.value)")) == HOLDABLE
            names = await form.locator("label:has(input[name=type])").all_inner_texts()
            assert not [n for n in names if re.search("[A-Za-z]", n)], names
            await form.locator("input[value=jurisdiction_exit]").check()
            await expect(form.locator("input[name=all]")).not_to_be_checked()
            await form.locator("select[name=reason]").select_option("hospital")
            await form.locator("input[name=reason_text]").fill("丽水市中心医院住院治疗")
            await form.locator("button[type=submit]").click()
            asked = page.locator(".suspensions li[data-status=requested]")
            await expect(asked).to_contain_text("住院")
            await expect(asked).to_contain_text("待审批")
            await expect(asked).to_contain_text("越界（离开执行地）")
            await expect(asked).to_contain_text("申请人 王警官")
            # An officer cannot approve; the request holds nothing yet.
            await expect(asked.locator("button.approve")).to_have_count(0)

            # The county supervisor approves it, in a tab of their own.
            boss = await context.new_page()
            await log_in(boss, base, supervisor)
            await open_file(boss, base, "S1")
            await boss.locator(".suspensions li[data-status=requested] button.approve").click()
            approved = boss.locator(".suspensions li[data-status=approved]")
            await expect(approved).to_contain_text("生效中")
            await expect(approved).to_contain_text("申请人 王警官 · 批准人 赵科长")

            # The tag walks out of 莲都区: the alert is recorded and shown, but held.
            await boss.goto(f"{base}/#/live")
            for fix in walk_out():
                live.device.publish("em/T1/loc", fix)
            held = boss.locator(".alert", has_text="越界（离开执行地）").locator(".tag.held")
            await expect(held).to_contain_text("已暂停（住院）")
            await expect(held).to_contain_text("自动恢复")
            await expect(boss.locator(".banner")).to_be_hidden()  # nothing to act on yet
            await boss.screenshot(path=shots / "suspended-alert.png")
            [alert] = await live.alerts(supervisee="S1", type="jurisdiction_exit")
            assert alert["held"]["reason_zh"] == "住院"
            detail = (await live.http.get(f"/api/v1/alerts/{alert['id']}")).json()
            assert "routed" not in [e["action"] for e in detail["timeline"]]
            # The case record says so too.
            await page.reload()
            history = page.locator(f".history li[data-alert-id='{alert['id']}']")
            await expect(history.locator(".tag.held")).to_contain_text("已暂停")

            # Discharged early: the officer revokes it, and the alert is delivered now.
            async def give_reason(dialog: Dialog) -> None:
                await dialog.accept("已提前出院")

            page.once("dialog", give_reason)
            await page.locator(".suspensions li[data-status=approved] button.revoke").click()
            revoked = page.locator(".suspensions li[data-status=revoked]")
            await expect(revoked).to_contain_text("王警官")
            await expect(revoked).to_contain_text("已提前出院")

            async def released() -> Any:
                body = (await live.http.get(f"/api/v1/alerts/{alert['id']}")).json()
                return body if body["held"] is None else None

            body = await eventually(released, "the revoked suspension did not release the alert")
            assert [e["action"] for e in body["timeline"]][1:4] == ["held", "released", "routed"]
            await boss.reload()
            row = boss.locator(f".alert[data-alert-id='{alert['id']}']")
            await expect(row).to_be_visible()
            await expect(row.locator(".tag.held")).to_have_count(0)
            await expect(boss.locator(".banner")).to_contain_text("1 条告警待签收")

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"
