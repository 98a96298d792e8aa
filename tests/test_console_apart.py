"""禁止接触 edited in the person file, in headless Chromium against the whole service on the
real PostgreSQL, Redis and Mosquitto: the monitoring centre's operator adds a no-contact
order with another supervisee, registers a protected person and replaces their phone,
and ends both after confirming — seeing the API's refusals in Chinese on the way — while
the service's own records follow each step. A justice-station officer and an auditor, whom
the API refuses these changes, see the orders but no control to change them. The protected
person's number is never shown but by its last four digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from api.tokens import create_token
from tests.live import Live, running
from tests.test_console import ROSTER, browser, log_in, pytestmark, require_build, zones

__all__ = ["pytestmark"]  # Chromium as in tests/test_console.py

NUMBER = "+8613900000017"


async def listed(live: Live, supervisee: str, what: str) -> list[dict[str, Any]]:
    response = await live.http.get(f"/api/v1/supervisees/{supervisee}/{what}")
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def refused(page: Page, text: str) -> None:
    """The page shows the API's refusal, in Chinese; the toast is closed for the next."""
    toast = page.locator(".toast.error", has_text=text)
    await expect(toast).to_contain_text("操作未成功：")
    await toast.evaluate("t => t.remove()")


async def test_an_operator_adds_and_ends_no_contact_orders_and_protected_persons(
    pg_dsn: Any, redis_url: Any, mqtt_url: Any, tmp_path: Path, shots: Path
) -> None:
    require_build()
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        base = str(live.http.base_url)
        operator = live.http.headers["Authorization"].removeprefix("Bearer ")
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, base, operator)
            await page.goto(f"{base}/#/person/S1")
            info = page.locator(".person-info")
            await expect(info.locator("h2")).to_have_text("张某")
            await expect(info).to_contain_text("无禁止接触令，无被保护人")

            # A no-contact order with 李某; first with no distance, which the API refuses.
            form = info.locator("form.no-contact-form")
            await form.locator("select[name=other]").select_option("S2")
            await form.locator("input[name=distance_m]").fill("0")
            await form.locator("input[name=confirm_s]").fill("600")
            await form.locator("input[name=note]").fill("（2026）浙1102刑执12号")
            await form.locator("button[type=submit]").click()
            await refused(page, "距离（米）须大于 0")
            assert await listed(live, "S1", "no-contact") == []
            await form.locator("input[name=distance_m]").fill("300")
            await form.locator("button[type=submit]").click()
            order = info.locator("li[data-no-contact]")
            await expect(order).to_contain_text(
                "与 李某（S2） 保持 300 米以上（持续 10 分钟即告警）"
            )
            [stored] = await listed(live, "S1", "no-contact")
            assert (sorted(stored["people"]), stored["distance_m"], stored["confirm_s"]) == (
                ["S1", "S2"],
                300.0,
                600,
            )
            assert [o["id"] for o in await listed(live, "S2", "no-contact")] == [stored["id"]]

            # A protected person with an OwnTracks phone and a number for warnings; the
            # number is badly typed first.
            form = info.locator("form.protected-form")
            await form.locator("input[name=name]").fill("王女士")
            await form.locator("input[name=device]").fill("V1")
            await form.locator("select[name=via]").select_option("owntracks")
            await form.locator("input[name=ident]").fill("victim/phone")
            await form.locator("input[name=distance_m]").fill("800")
            await form.locator("input[name=sms]").fill("139 0000 0017")
            await form.locator("button[type=submit]").click()
            await refused(page, "短信预警号码须为 5–20 位数字")
            await form.locator("input[name=sms]").fill(NUMBER)
            await form.locator("button[type=submit]").click()
            shielded = info.locator("li[data-protected]")
            await expect(shielded).to_contain_text("手机 V1（OwnTracks），800 米内持续 60 秒即告警")
            await expect(shielded).to_contain_text("短信预警 **********0017")
            await expect(shielded).to_contain_text("被保护人 王女士（PP-")
            [registered] = await listed(live, "S1", "protected")
            assert (registered["name"], registered["device"], registered["owntracks"]) == (
                "王女士",
                "V1",
                "victim/phone",
            )
            assert registered["distance_m"] == 800.0

            # Her new phone: first 李某's tag by mistake, which the API refuses (409).
            await shielded.locator("button.replace-phone").click()
            phone = shielded.locator("form.phone-form")
            await phone.locator("input[name=device]").fill("T2")
            await phone.locator("input[name=ident]").fill("x/y")
            await phone.locator("button[type=submit]").click()
            await refused(page, "手机 T2 是（或上报为）社区矫正对象的设备")
            assert [p["device"] for p in await listed(live, "S1", "protected")] == ["V1"]
            await phone.locator("input[name=device]").fill("V2")
            await phone.locator("select[name=via]").select_option("osmand")
            await phone.locator("input[name=ident]").fill("victim-2")
            await phone.locator("button[type=submit]").click()
            await expect(shielded).to_contain_text("手机 V2（Traccar Client）")
            await expect(shielded).to_contain_text("短信预警 **********0017")  # kept
            [replaced] = await listed(live, "S1", "protected")
            assert (replaced["id"], replaced["device"], replaced["osmand"], replaced["sms"]) == (
                registered["id"],
                "V2",
                "victim-2",
                "**********0017",
            )
            assert (replaced["name"], replaced["owntracks"], replaced["distance_m"]) == (
                "王女士",
                None,
                800.0,
            )
            assert NUMBER not in await page.content()
            await page.screenshot(path=shots / "no-contact.png")

            # Ending asks first: cancelled, nothing ends.
            await order.locator("button.end").click()
            confirm = order.locator("form.confirm-end")
            await expect(confirm).to_contain_text("解除后不再比对双方位置")
            await confirm.locator("button.cancel").click()
            await expect(confirm).to_have_count(0)
            assert len(await listed(live, "S1", "no-contact")) == 1
            # Confirmed with its reason, the order ends.
            await order.locator("button.end").click()
            await confirm.locator("input[name=reason]").fill("禁止令期满")
            await confirm.locator("button.confirm").click()
            await expect(info.locator("li[data-no-contact]")).to_have_count(0)
            assert await listed(live, "S2", "no-contact") == []

            await shielded.locator("button.end").click()
            confirm = shielded.locator("form.confirm-end")
            await expect(confirm).to_contain_text("其位置将被永久删除")
            await confirm.locator("input[name=reason]").fill("被保护人申请撤销")
            await confirm.locator("button.confirm").click()
            await expect(info).to_contain_text("无禁止接触令，无被保护人")
            assert await listed(live, "S1", "protected") == []

            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


async def test_only_the_role_the_api_lets_change_them_sees_the_controls(
    pg_dsn: Any, redis_url: Any, mqtt_url: Any, tmp_path: Path
) -> None:
    require_build()
    [s1, s2] = ROSTER["supervisees"]
    roster = {
        **ROSTER,
        "offices": [{"id": "ST1", "name": "紫金司法所", "kind": "station"}],
        "supervisees": [{**s1, "office": "ST1"}, s2],
        "no_contact": [{"id": "NC1", "people": ["S1", "S2"], "distance_m": 300}],
        "protected": [
            {
                "id": "PP1",
                "supervisee": "S1",
                "device": {"id": "V1", "kind": "phone", "owntracks": "victim/phone"},
            }
        ],
    }
    async with running(pg_dsn, redis_url, mqtt_url, zones(), roster) as live:
        base = str(live.http.base_url)
        pool = live.service.pool
        tokens = {
            "operator": live.http.headers["Authorization"].removeprefix("Bearer "),
            "officer": await create_token(pool, "officer", office="ST1", subject="王警官"),
            "auditor": await create_token(pool, "auditor", subject="检察院"),
        }
        async with browser(live, tmp_path) as (context, outside, errors):
            for role, token in tokens.items():
                allowed = role == "operator"
                if not allowed:  # the API refuses this role what the controls would do
                    answer = await live.http.post(
                        "/api/v1/no-contact/NC1/end",
                        json={"reason": "x"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert answer.status_code == 403, (role, answer.text)
                page = await context.new_page()
                await log_in(page, base, token)
                await page.goto(f"{base}/#/person/S1")
                info = page.locator(".person-info")
                await expect(info.locator("h2")).to_have_text("张某")
                await expect(info.locator("li[data-no-contact=NC1]")).to_contain_text("S2")
                await expect(info.locator("li[data-protected=PP1]")).to_contain_text("手机 V1")
                ends = info.locator(".apart button.end")
                await expect(ends).to_have_count(2 if allowed else 0)
                await expect(info.locator(".apart button")).to_have_count(3 if allowed else 0)
                for form in ("no-contact-form", "protected-form"):
                    await expect(info.locator(f"form.{form}")).to_have_count(int(allowed))
                await page.close()
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"
