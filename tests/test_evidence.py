"""Evidence bundles (证据包) through the real API on PostgreSQL: what a bundle holds, that
every export is audited and scoped like the track, and that `fencewatch evidence verify`
accepts an untouched bundle and rejects one with any byte of its content or manifest
changed, its signature swapped, or signed by another key; and that the checks
docs/security.md gives inspectors without fencewatch (OpenSSL, Python) do the same."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.bundle import seal, verify
from evidence.keys import fingerprint, public_pem, service_key
from fencewatch import cli
from fencewatch.config import Settings
from tests.test_api import World, _add_fixes, _error, open_world

FILES = {
    "report.pdf", "track.csv", "track.geojson", "zones.geojson", "timeline.csv",
    "timeline.json", "rules.json", "manifest.json", "manifest.sig",
}  # fmt: skip
SECURITY_DOC = Path(__file__).parent.parent / "docs" / "security.md"


def key_path(tmp_path: Path) -> Path:
    """Where the test service keeps its evidence key (made on first use)."""
    return tmp_path / "keys" / "evidence.pem"


@pytest.fixture
async def world(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(evidence_key=key_path(tmp_path))
    async with open_world(pg_dsn, redis_url, settings=settings) as opened:
        yield opened


async def _alert_bundle(world: World, tmp_path: Path) -> tuple[Path, int]:
    """P1 walks out of J1 (two fixes in, two out) and the alert is resolved; its bundle."""
    fixes = [(0, 28.45, 0, "in"), (1, 28.46, 0, "in"), (2, 28.52, 0, "out"), (3, 28.53, 4, "out")]
    await _add_fixes(world.pool, "P1", fixes)
    alert = world.alerts["P1"]
    note = "电话核实，本人承认擅自离开，已责令返回"
    r = await world.call(
        "officer",
        "POST",
        f"/api/v1/alerts/{alert}/resolve",
        # P1 is still out: resolved knowingly (issue 15.1), the breach still in progress.
        json={"disposition": "true_violation", "note": note, "while_active": True},
    )
    assert r.status_code == 200, r.text
    # The person's level is changed after the breach: the bundle says so.
    person = {"name": "对象P1", "office": "S1", "level": "strict", "jurisdiction": ["J1"],
              "exclusion": ["X1"], "home": "H1"}  # fmt: skip
    r = await world.call("operator", "PUT", "/api/v1/supervisees/P1", json=person)
    assert r.status_code == 200, r.text
    response = await world.get("officer", f"/api/v1/alerts/{alert}/evidence")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert f"evidence-alert-{alert}-" in response.headers["content-disposition"]
    path = tmp_path / "bundle.zip"
    path.write_bytes(response.content)
    return path, alert


def _rewrite(path: Path, name: str, change: bytes | None = None) -> Path:
    """A copy of the bundle with member `name`'s first byte (or its whole content) changed."""
    out = path.with_name(f"changed-{name}.zip")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == name:
                data = change if change is not None else bytes([data[0] ^ 1]) + data[1:]
            dst.writestr(info, data)
    return out


def _resealed(path: Path, key: Ed25519PrivateKey) -> Path:
    """The bundle's files and metadata signed by `key` instead: consistent in itself, as a
    forger with their own key would make it."""
    with zipfile.ZipFile(path) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        files = {f["name"]: bundle.read(f["name"]) for f in manifest["files"]}
    about = {k: v for k, v in manifest.items() if k not in ("format", "files", "key")}
    data, _ = seal(files, about, key, _instant(manifest["exported_at"]))
    out = path.with_name("resealed.zip")
    out.write_bytes(data)
    return out


def _instant(text: str) -> datetime:
    """To the millisecond, as the manifest's times are written."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _verify(*args: str | Path) -> tuple[int, str]:
    return _command("verify", *args)


def _command(*args: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["evidence", *map(str, args)])
    return code, out.getvalue()


async def test_an_alert_bundle_holds_the_evidence_and_the_export_is_audited(
    world: World, tmp_path: Path
) -> None:
    path, alert = await _alert_bundle(world, tmp_path)
    with zipfile.ZipFile(path) as bundle:
        assert set(bundle.namelist()) == FILES
        manifest = json.loads(bundle.read("manifest.json"))
        pdf = bundle.read("report.pdf")
        track = list(csv.DictReader(io.StringIO(bundle.read("track.csv").decode())))
        timeline = json.loads(bundle.read("timeline.json"))
        rules = json.loads(bundle.read("rules.json"))
        zones = json.loads(bundle.read("zones.geojson"))
    assert pdf.startswith(b"%PDF-")
    assert manifest["scope"]["kind"] == "alert" and manifest["scope"]["alert"] == alert
    assert manifest["exported_by"] == {"subject": "officer", "role": "officer"}
    assert {f["name"] for f in manifest["files"]} == FILES - {"manifest.json", "manifest.sig"}
    # The fixes with their accuracy, the way ingest stored them.
    assert [(f["lat"], f["acc_m"], f["zone_state"]) for f in track] == [
        ("28.45", "8.5", "in"), ("28.46", "8.5", "in"), ("28.52", "8.5", "out"),
        ("28.53", "8.5", "out"),
    ]  # fmt: skip
    assert track[3]["quality"] == "ACC_POOR"
    # The alert's steps and the disposition with its note.
    [record] = timeline
    assert record["id"] == alert and record["disposition"] == "true_violation"
    resolved = [s for s in record["timeline"] if s["action"] == "resolved"]
    assert resolved[0]["actor"] == "officer" and "已责令返回" in resolved[0]["detail"]["note"]
    # The rules in force: the person's zones, drawn and listed.
    assert (rules["jurisdiction"], rules["exclusion"], rules["home"]) == (["J1"], ["X1"], "H1")
    assert {f["properties"]["id"] for f in zones["features"]} == {"J1", "X1", "H1"}
    [change] = rules["changes_since_start"]
    assert (change["action"], change["actor"]) == ("supervisee.put", "operator")
    assert change["detail"]["level"] == rules["supervisee"]["level"] == "strict"

    # The key in the manifest is the one the API serves for pinning.
    key = (await world.get("auditor", "/api/v1/evidence/key")).json()
    assert key["algorithm"] == "Ed25519"
    assert manifest["key"]["fingerprint"] == key["fingerprint"]
    assert manifest["key"]["public_key"] == key["public_key"]
    assert os.stat(key_path(tmp_path)).st_mode & 0o777 == 0o600

    [audit] = await world.pool.fetch("SELECT * FROM audit_log WHERE action = 'evidence.export'")
    with zipfile.ZipFile(path) as bundle:
        manifest_sha = hashlib.sha256(bundle.read("manifest.json")).hexdigest()
    assert (audit["actor"], audit["role"]) == ("officer", "officer")
    assert audit["object"] == f"alert:{alert}"
    assert audit["detail"]["manifest_sha256"] == manifest_sha
    assert audit["detail"]["fixes"] == 4 and audit["detail"]["alerts"] == [alert]
    assert audit["supervisee_id"] == "P1"


async def test_verify_accepts_an_untouched_bundle_and_names_what_changed(
    world: World, tmp_path: Path
) -> None:
    path, _ = await _alert_bundle(world, tmp_path)
    key = (await world.get("operator", "/api/v1/evidence/key")).json()
    saved = tmp_path / "key.json"
    saved.write_text(json.dumps(key))
    pem = tmp_path / "key.pem"
    pem.write_text(key["public_key"])

    for pin in ((), ("--key", saved), ("--key", pem), ("--key", key["fingerprint"])):
        code, out = await asyncio.to_thread(_verify, path, *pin)
        assert code == 0, out
        assert out.startswith("OK: 7 files match the manifest") and key["fingerprint"] in out

    # One byte of any file changed: that file is named, and only it.
    for name in sorted(FILES):
        code, out = await asyncio.to_thread(_verify, _rewrite(path, name))
        [headline, problem] = out.splitlines()
        assert code == 1 and headline.startswith("FAILED"), out
        if name == "manifest.sig":
            assert "manifest.json: changed after export, or manifest.sig replaced" in problem
        else:
            assert problem.startswith(f"  {name}: changed"), out
    # One byte of the metadata (who exported it), the manifest still well-formed.
    with zipfile.ZipFile(path) as bundle:
        body = bundle.read("manifest.json")
    assert b'"subject": "officer"' in body
    edited = body.replace(b'"subject": "officer"', b'"subject": "officeR"')
    code, out = await asyncio.to_thread(_verify, _rewrite(path, "manifest.json", edited))
    assert code == 1 and "manifest.json: changed after export" in out
    # The same change with the manifest's hash updated to match: the signature fails.
    with zipfile.ZipFile(path) as bundle:
        changed_csv = bytes([bundle.read("track.csv")[0] ^ 1]) + bundle.read("track.csv")[1:]
        manifest = json.loads(bundle.read("manifest.json"))
    for entry in manifest["files"]:
        if entry["name"] == "track.csv":
            entry["sha256"] = hashlib.sha256(changed_csv).hexdigest()
    resigned = json.dumps(manifest, ensure_ascii=False, indent=2).encode() + b"\n"
    forged = _rewrite(_rewrite(path, "track.csv", changed_csv), "manifest.json", resigned)
    code, out = await asyncio.to_thread(_verify, forged)
    assert code == 1 and "manifest.json: changed after export" in out
    # One byte of the manifest changed.
    code, out = await asyncio.to_thread(_verify, _rewrite(path, "manifest.json"))
    assert code == 1 and "manifest.json: changed" in out
    # A byte flipped in the zip itself, inside the PDF's stored data.
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as bundle:
        info = bundle.getinfo("report.pdf")
    at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 10
    raw[at] ^= 0x01
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(raw))
    code, out = await asyncio.to_thread(_verify, flipped)
    assert code == 1 and "report.pdf: damaged" in out
    # A file added after export.
    added = tmp_path / "added.zip"
    added.write_bytes(path.read_bytes())
    with zipfile.ZipFile(added, "a") as bundle:
        bundle.writestr("note.txt", "added later")
    code, out = await asyncio.to_thread(_verify, added)
    assert code == 1 and "note.txt: added after export" in out

    # Signed with the service's key, but not the key the verifier pins.
    other = Ed25519PrivateKey.generate().public_key()
    code, out = await asyncio.to_thread(_verify, path, "--key", fingerprint(other))
    assert code == 1
    assert (
        f"signed by another key, {key['fingerprint']}, not the pinned {fingerprint(other)}" in out
    )
    # Bad input is said plainly.
    code, out = await asyncio.to_thread(_verify, tmp_path / "missing.zip")
    assert code == 2
    notzip = tmp_path / "not.zip"
    notzip.write_text("hello")
    code, out = await asyncio.to_thread(_verify, notzip)
    assert code == 1 and "not a readable zip file" in out


async def test_a_person_bundle_is_scoped_and_checked_like_the_track(
    world: World, tmp_path: Path
) -> None:
    await _add_fixes(world.pool, "P1", [(0, 28.45, 0, "in")])
    url = "/api/v1/supervisees/P1/evidence?from=2025-11-27T00:00:00Z&to=2025-11-28T00:00:00Z"
    response = await world.get("auditor", url)
    assert response.status_code == 200, response.text
    assert verify(response.content).ok
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
    assert manifest["scope"]["kind"] == "supervisee" and manifest["counts"]["fixes"] == 1
    assert manifest["counts"]["alerts"] == 1  # the seeded alert, confirmed in the range

    # An officer of another station sees no such person; a bad range is refused.
    assert "not found" in _error(await world.get("officer", url.replace("P1", "P3")), 404)
    assert "not found" in _error(
        await world.get("officer", f"/api/v1/alerts/{world.alerts['P3']}/evidence"), 404
    )
    for query, reason in (
        ("from=2025-11-27T03:00:00Z&to=2025-11-27T02:00:00Z", "must be after"),
        ("from=2025-10-01T00:00:00Z&to=2025-11-27T00:00:00Z", "at most 31 days"),
    ):
        assert reason in _error(
            await world.get("operator", f"/api/v1/supervisees/P1/evidence?{query}"), 422
        )
    exports = await world.pool.fetch(
        "SELECT actor, object FROM audit_log WHERE action = 'evidence.export'"
    )
    assert [tuple(r) for r in exports] == [("auditor", "supervisee:P1")]


async def test_the_command_exports_an_audited_bundle_that_verifies(
    world: World, tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("FENCEWATCH_EVIDENCE_KEY", str(key_path(tmp_path)))
    out = tmp_path / "p1.zip"
    args = ["evidence", "export", "--supervisee", "P1", "--from", "2025-11-27T08:00:00+08:00",
            "--to", "2025-11-28T08:00:00+08:00", "-o", str(out)]  # fmt: skip
    assert await asyncio.to_thread(cli.main, args) == 0
    code, text = await asyncio.to_thread(_verify, out, "--key", tmp_path / "nothing.pub")
    assert code == 2  # no such key file: said plainly
    key = service_key(key_path(tmp_path)).public_key()
    pub = tmp_path / "service.pub"
    pub.write_text(public_pem(key))
    code, text = await asyncio.to_thread(_verify, out, "--key", pub)
    assert code == 0, text
    [audit] = await world.pool.fetch("SELECT * FROM audit_log WHERE action = 'evidence.export'")
    assert audit["actor"].startswith("fencewatch evidence export (")
    assert audit["object"] == "supervisee:P1"
    bad = ["evidence", "export", "--supervisee", "P1", "--from", "2025-11-27T00:00:00",
           "--to", "2025-11-28T00:00:00+08:00"]  # fmt: skip
    assert await asyncio.to_thread(cli.main, bad) == 2
    assert await asyncio.to_thread(cli.main, ["evidence", "export", "--alert", "999999"]) == 1


async def test_a_breach_still_in_progress_is_covered_up_to_the_export(world: World) -> None:
    # P2's breach began ten minutes ago and is still going on.
    alert = world.alerts["P2"]
    await world.pool.execute(
        "UPDATE alerts SET ts = now() - interval '10 minutes', active = true,"
        " cleared_at = NULL WHERE id = $1",
        alert,
    )
    response = await world.get("operator", f"/api/v1/alerts/{alert}/evidence")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
    scope = manifest["scope"]
    # From an hour before it began to the export: not into an hour nobody has seen yet.
    assert _instant(scope["to"]) <= _instant(manifest["exported_at"])
    assert _instant(scope["to"]) - _instant(scope["from"]) >= timedelta(minutes=70)


async def test_where_a_protected_person_was_is_only_in_that_alerts_own_bundle(
    world: World,
) -> None:
    alert = world.alerts["P1"]
    where = {"device": "V1", "lat": 28.4512, "lon": 119.9123, "radius_m": 8.0}
    await world.pool.execute(
        "UPDATE alerts SET type = 'protected_proximity',"
        " detail = detail || jsonb_build_object('order', 'PP1', 'protected', $2::jsonb)"
        " WHERE id = $1",
        alert,
        where,
    )
    own = await world.get("officer", f"/api/v1/alerts/{alert}/evidence")
    url = "/api/v1/supervisees/P1/evidence?from=2025-11-27T00:00:00Z&to=2025-11-28T00:00:00Z"
    person = await world.get("auditor", url)
    assert own.status_code == person.status_code == 200, (own.text, person.text)
    with zipfile.ZipFile(io.BytesIO(own.content)) as bundle:
        [record] = json.loads(bundle.read("timeline.json"))
    assert record["detail"]["protected"] == where
    with zipfile.ZipFile(io.BytesIO(person.content)) as bundle:
        assert b"28.4512" not in bundle.read("timeline.json")
    exports = await world.pool.fetch(
        "SELECT object, detail FROM audit_log WHERE action = 'evidence.export' ORDER BY id"
    )
    assert [(r["object"], r["detail"].get("protected")) for r in exports] == [
        (f"alert:{alert}", True),
        ("supervisee:P1", None),
    ]


async def test_a_swapped_signature_or_a_bundle_signed_by_another_key_is_told(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, alert = await _alert_bundle(world, tmp_path)
    # The deployment publishes its key by command as by API; the command's PEM pins it.
    monkeypatch.setenv("FENCEWATCH_EVIDENCE_KEY", str(key_path(tmp_path)))
    code, published = await asyncio.to_thread(_command, "key")
    assert code == 0
    served = (await world.get("auditor", "/api/v1/evidence/key")).json()
    assert json.loads(published) == served
    code, pem = await asyncio.to_thread(_command, "key", "--pem")
    assert code == 0 and pem == served["public_key"]
    pinned = tmp_path / "deployment.pem"
    pinned.write_text(pem)

    # The signature of another export of the same alert, by the same key.
    again = await world.get("officer", f"/api/v1/alerts/{alert}/evidence")
    with zipfile.ZipFile(io.BytesIO(again.content)) as bundle:
        other_signature = bundle.read("manifest.sig")
    swapped = _rewrite(path, "manifest.sig", other_signature)
    code, out = await asyncio.to_thread(_verify, swapped, "--key", pinned)
    assert code == 1 and "manifest.sig replaced" in out

    # Everything re-signed by another key: consistent in itself, so without a pin it is
    # OK but names that key, not the deployment's; pinned, it fails saying so.
    forger = Ed25519PrivateKey.generate()
    theirs = fingerprint(forger.public_key())
    resealed = _resealed(path, forger)
    code, out = await asyncio.to_thread(_verify, resealed)
    assert code == 0 and f"signed by {theirs}" in out and served["fingerprint"] not in out
    assert "the key was not pinned" in out
    code, out = await asyncio.to_thread(_verify, resealed, "--key", pinned)
    assert code == 1
    assert f"manifest.sig: signed by another key, {theirs}, not the pinned" in out
    assert served["fingerprint"] in out

    # A key file the command cannot use is said plainly.
    broken = tmp_path / "broken.pem"
    broken.write_text("not a key")
    monkeypatch.setenv("FENCEWATCH_EVIDENCE_KEY", str(broken))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert await asyncio.to_thread(_command, "key") == (2, "")
    assert "does not hold an unencrypted PEM private key" in err.getvalue()


def _documented(language: str) -> str:
    """The inspector's check in `language` as docs/security.md gives it."""
    text = SECURITY_DOC.read_text()
    section = text[text.index("## Evidence bundles") :]
    section = section[: section.index("\n## ")]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def _openssl3() -> bool:
    if not all(shutil.which(tool) for tool in ("openssl", "unzip", "jq", "sha256sum")):
        return False
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    return version.startswith("OpenSSL 3")


@pytest.mark.parametrize("tool", ["python", "sh"])
async def test_an_inspector_checks_a_bundle_without_fencewatch_as_the_docs_say(
    world: World, tmp_path: Path, tool: str
) -> None:
    if tool == "sh" and not _openssl3():
        pytest.skip("needs OpenSSL 3, unzip, jq and sha256sum")
    path, _ = await _alert_bundle(world, tmp_path)
    served = (await world.get("auditor", "/api/v1/evidence/key")).json()
    script = tmp_path / "check"
    script.write_text(_documented(tool))

    def check(bundle: Path) -> subprocess.CompletedProcess[str]:
        """Run as the docs say: the bundle and key.pem side by side in a folder."""
        where = tmp_path / f"inspect-{bundle.stem}"
        where.mkdir()
        shutil.copy(bundle, where / "bundle.zip")
        (where / "key.pem").write_text(served["public_key"])
        command = (
            [sys.executable, str(script), "bundle.zip", "key.pem"]
            if tool == "python"
            else ["bash", "-e", "-o", "pipefail", str(script)]
        )
        return subprocess.run(command, cwd=where, capture_output=True, text=True)

    ok = await asyncio.to_thread(check, path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    changed = await asyncio.to_thread(check, _rewrite(path, "track.csv"))
    assert changed.returncode != 0
    forged = await asyncio.to_thread(check, _resealed(path, Ed25519PrivateKey.generate()))
    assert forged.returncode != 0
    if tool == "python":
        assert ok.stdout.startswith("OK: 7 files as exported")
        assert changed.stderr.strip() == "FAILED: track.csv changed"
        assert "signed by another key" in forged.stderr
    else:
        assert served["fingerprint"].removeprefix("sha256:") in ok.stdout
        assert "Signature Verified Successfully" in ok.stdout
        assert "track.csv: OK" in ok.stdout and "track.csv: FAILED" in changed.stdout
        assert "Signature Verification Failure" in forged.stdout + forged.stderr
