"""A bundle is one zip: the evidence files, manifest.json (every file with its SHA-256 and
size, who exported what and when, the signing key) and manifest.sig (the raw 64-byte
Ed25519 signature over manifest.json's exact bytes). The signature covers the manifest
and, through its hashes, every file's content; the zip's wrapping (timestamps,
compression) is not evidence and is not covered."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.keys import ALGORITHM, KeyProblem, fingerprint, load_public, public_pem

FORMAT = "fencewatch-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# What reading a damaged member can raise: a bad CRC, a broken deflate stream, a header
# that no longer matches the directory, a compression method changed to one unknown.
MAX_MANIFEST = 16 * 1024 * 1024
SIGNATURE_SIZE = 64  # Ed25519
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError)


def seal(
    files: Mapping[str, bytes], about: Mapping[str, Any], key: Ed25519PrivateKey, at: datetime
) -> tuple[bytes, bytes]:
    """The bundle of `files` and its manifest (`about`: who, what, when), signed by `key`;
    returns (zip, manifest.json)."""
    public = key.public_key()
    manifest = {
        "format": FORMAT,
        **about,
        "files": [
            {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in files.items()
        ],
        "key": {
            "algorithm": ALGORITHM,
            "fingerprint": fingerprint(public),
            "public_key": public_pem(public),
        },
    }
    body = json.dumps(manifest, ensure_ascii=False, indent=2).encode() + b"\n"
    out = io.BytesIO()
    stamp = at.timetuple()[:6]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in [*files.items(), (MANIFEST, body), (SIGNATURE, key.sign(body))]:
            bundle.writestr(zipfile.ZipInfo(name, stamp), data, zipfile.ZIP_DEFLATED)
    return out.getvalue(), body


@dataclass
class Verdict:
    """What a check of a bundle found: no problems means it is as exported."""

    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    fingerprint: str | None = None
    checked: int = 0  # files whose hash and size matched

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(data: bytes, pinned: str | None = None) -> Verdict:
    """Check a bundle: the manifest's signature by the key it names (and that this is the
    `pinned` fingerprint, if given), then every file against the manifest; each problem
    names the file concerned."""
    verdict = Verdict()
    try:
        bundle = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        verdict.problems.append(f"not a readable zip file ({exc})")
        return verdict
    with bundle:
        members = {info.filename: info for info in bundle.infolist()}
        twice = [
            name for name, n in Counter(i.filename for i in bundle.infolist()).items() if n > 1
        ]
        verdict.problems += [f"{name}: stored more than once" for name in twice]
        body = _read(bundle, members, MANIFEST, verdict, most=MAX_MANIFEST)
        signature = _read(bundle, members, SIGNATURE, verdict, most=SIGNATURE_SIZE)
        if body is None:
            return verdict
        listed = _manifest(body, signature, pinned, verdict)
        if listed is None:
            return verdict
        for entry in listed:
            _check_file(bundle, members, entry, verdict)
        named = {e["name"] for e in listed} | {MANIFEST, SIGNATURE}
        verdict.problems += [
            f"{name}: added after export (not in the manifest)"
            for name in members
            if name not in named
        ]
    return verdict


def _read(
    bundle: zipfile.ZipFile,
    members: Mapping[str, zipfile.ZipInfo],
    name: str,
    verdict: Verdict,
    size: int | None = None,
    most: int | None = None,
) -> bytes | None:
    """The member's bytes; None (and the problem recorded) if it is missing, damaged, not
    `size` long, or longer than `most` — a bundle is never inflated beyond what it says."""
    info = members.get(name)
    if info is None:
        verdict.problems.append(f"{name}: missing")
        return None
    if size is not None and info.file_size != size:
        verdict.problems.append(f"{name}: changed (size {info.file_size}, manifest says {size})")
        return None
    if most is not None and info.file_size > most:
        verdict.problems.append(f"{name}: changed ({info.file_size} bytes, at most {most})")
        return None
    try:
        with bundle.open(info) as member:
            return member.read()
    except _DAMAGED as exc:
        verdict.problems.append(f"{name}: damaged, cannot be read ({exc})")
        return None


def _manifest(
    body: bytes, signature: bytes | None, pinned: str | None, verdict: Verdict
) -> list[dict[str, Any]] | None:
    """The manifest's file list, after checking its signature (problems are recorded;
    the list is still returned so every changed file is named)."""
    try:
        manifest = json.loads(body)
        key = load_public(manifest["key"]["public_key"])
        listed = [
            {"name": str(e["name"]), "sha256": str(e["sha256"]), "size": int(e["size"])}
            for e in manifest["files"]
        ]
    except (ValueError, KeyError, TypeError, KeyProblem) as exc:
        verdict.problems.append(f"{MANIFEST}: changed, not a bundle manifest ({exc})")
        return None
    verdict.manifest = manifest
    verdict.fingerprint = fingerprint(key)
    if signature is None:  # its absence is recorded
        return listed
    try:
        key.verify(signature, body)
    except InvalidSignature:
        # Which of the two changed cannot be told apart: say both.
        verdict.problems.append(
            f"{MANIFEST}: changed after export, or {SIGNATURE} replaced (the signature"
            f" does not verify with the key the manifest names, {verdict.fingerprint})"
        )
        return listed
    if pinned is not None and verdict.fingerprint != pinned:
        verdict.problems.append(
            f"{SIGNATURE}: signed by another key, {verdict.fingerprint}, not the pinned {pinned}"
        )
    return listed


def _check_file(
    bundle: zipfile.ZipFile,
    members: Mapping[str, zipfile.ZipInfo],
    entry: Mapping[str, Any],
    verdict: Verdict,
) -> None:
    data = _read(bundle, members, entry["name"], verdict, size=entry["size"])
    if data is None:
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        verdict.problems.append(
            f"{entry['name']}: changed (SHA-256 {digest}, manifest says {entry['sha256']})"
        )
    else:
        verdict.checked += 1
