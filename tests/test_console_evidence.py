"""Issue 15.10 in real Chromium: an operator exports the evidence bundle (导出证据包) of a
breach from the alert queue and of the person over the chosen range from their file; each
download is a signed bundle that `evidence.bundle.verify` accepts against the key the API
serves, names the operator, and is in the audit log. No request leaves the service."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from playwright.async_api import expect

from evidence.bundle import verify
from tests.live import running
from tests.test_console import ROSTER, browser, log_in, require_build, zones
from tests.test_live_ingest import walk_out


async def test_an_operator_downloads_signed_bundles_from_the_queue_and_the_person_file(
    pg_dsn, redis_url, mqtt_url, tmp_path
) -> None:
    require_build()
    fixes = walk_out()
    async with running(pg_dsn, redis_url, mqtt_url, zones(), ROSTER) as live:
        token = live.http.headers["Authorization"].removeprefix("Bearer ")
        key = (await live.http.get("/api/v1/evidence/key")).json()
        async with browser(live, tmp_path) as (context, outside, errors):
            page = await context.new_page()
            await log_in(page, str(live.http.base_url), token)
            for f in fixes:
                live.device.publish("em/T1/loc", f)
            row = page.locator(".alert", has_text="越界（离开执行地）")
            await expect(row).to_contain_text("张某")
            [alert] = await live.alerts(supervisee="S1", type="jurisdiction_exit")

            # From the alert in the queue.
            async with page.expect_download() as downloading:
                await row.locator("button.evidence").click()
            download = await downloading.value
            assert download.suggested_filename.startswith(f"evidence-alert-{alert['id']}-")
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            await expect(page.locator(".toast", has_text="已导出证据包")).to_be_visible()
            manifest = _checked(saved, key["fingerprint"])
            assert manifest["scope"]["kind"] == "alert"
            assert manifest["scope"]["alert"] == alert["id"]
            assert manifest["exported_by"] == {"subject": "test operator", "role": "operator"}
            with zipfile.ZipFile(saved) as bundle:
                track = bundle.read("track.csv").decode().splitlines()
            assert len(track) == 1 + len(fixes)  # the header and every fix of the walk

            # From the person file, over the range shown above the map.
            await page.evaluate("location.hash = '#/person/S1'")
            await expect(page.locator(".person-info h2")).to_have_text("张某")
            async with page.expect_download() as downloading:
                await page.locator(".track-range button.evidence").click()
            download = await downloading.value
            assert download.suggested_filename.startswith("evidence-S1-")
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            manifest = _checked(saved, key["fingerprint"])
            assert manifest["scope"]["kind"] == "supervisee"
            assert manifest["counts"] == {"fixes": len(fixes), "alerts": 1}

            exports = await live.service.pool.fetch(
                "SELECT actor, object FROM audit_log WHERE action = 'evidence.export' ORDER BY id"
            )
            assert [tuple(r) for r in exports] == [
                ("test operator", f"alert:{alert['id']}"),
                ("test operator", "supervisee:S1"),
            ]
            assert outside.seen == [], f"the page asked for outside URLs: {outside.seen}"
            assert errors == [], f"errors in the page: {errors}"


def _checked(path: Path, fingerprint: str) -> dict:
    verdict = verify(path.read_bytes(), fingerprint)
    assert verdict.ok, verdict.problems
    with zipfile.ZipFile(path) as bundle:
        return dict(json.loads(bundle.read("manifest.json")))
