"""Making a bundle: gather the evidence (one consistent snapshot), write its files and
report, sign the manifest, and audit the export in the same transaction as the reads: an
export that is not audited is not handed out."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import files, report
from evidence.bundle import seal
from evidence.gather import Evidence, Scope, gather
from evidence.keys import fingerprint, service_key
from fencewatch.timefmt import iso_time
from storage.archive import Archive
from storage.db import Conn
from storage.repo import Offices
from storage.repo import access as access_repo

AUDIT_ACTION = "evidence.export"


@dataclass(frozen=True)
class Exporter:
    """Who asks, as the audit log names them: a token's subject and role, or a command."""

    subject: str
    role: str | None
    offices: Offices


@dataclass(frozen=True)
class Bundle:
    filename: str
    data: bytes
    manifest: bytes


async def export(
    conn: Conn, who: Exporter, scope: Scope, key_path: Path, timezone: str, archive: Archive
) -> Bundle:
    """Raises evidence.gather.NotFound / Refused, and evidence.keys.KeyProblem."""
    key = service_key(key_path)
    at = datetime.now(UTC)
    async with conn.transaction(isolation="repeatable_read"):
        evidence = await gather(conn, who.offices, scope, archive)
        about = {
            "exported_by": {"subject": who.subject, "role": who.role},
            "exported_at": iso_time(at),
            "scope": scope.describe(),
            "counts": {"fixes": len(evidence.fixes), "alerts": len(evidence.alerts)},
            "timezone": timezone,
        }
        # Rendering a month of fixes takes a while: off the event loop, which also runs
        # ingest in a one-process service.
        bundle, manifest = await asyncio.to_thread(_make, evidence, about, key, at, timezone)
        obj = (
            f"alert:{scope.alert}" if scope.alert is not None else f"supervisee:{scope.supervisee}"
        )
        await access_repo.audit(
            conn,
            who.subject,
            who.role,
            AUDIT_ACTION,
            obj,
            {
                **scope.describe(),
                "fixes": len(evidence.fixes),
                "alerts": [a["id"] for a in evidence.alerts],
                # The bundle holds where a protected person was (docs/security.md).
                **(
                    {"protected": True}
                    if any("protected" in a["detail"] for a in evidence.alerts)
                    else {}
                ),
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                "key": fingerprint(key.public_key()),
            },
        )
    stamp = at.strftime("%Y%m%dT%H%M%SZ")
    what = f"alert-{scope.alert}" if scope.alert is not None else scope.supervisee
    return Bundle(f"evidence-{what}-{stamp}.zip", bundle, manifest)


def _make(
    evidence: Evidence, about: dict[str, Any], key: Ed25519PrivateKey, at: datetime, timezone: str
) -> tuple[bytes, bytes]:
    data = files.render(evidence)
    pdf = report.render(evidence, about, data, fingerprint(key.public_key()), timezone)
    return seal({"report.pdf": pdf, **data}, about, key, at)
