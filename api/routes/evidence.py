"""Evidence bundles (证据包) of one alert or one person over a time range, and the public
key that signs them. An export reads location data, so it is allowed and audited like the
track it contains (社区矫正法 Art. 29)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.auth import Principal, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import Since, Until
from evidence import gather
from evidence.export import Bundle, Exporter, export
from evidence.keys import ALGORITHM, KeyProblem, published, service_key
from storage.archive import Archive
from storage.db import Conn

router = APIRouter(tags=["evidence"])

ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "the bundle (a zip file)"}
}


class EvidenceKey(BaseModel):
    algorithm: str = ALGORITHM
    fingerprint: str = Field(description="sha256: and the hex SHA-256 of the raw public key")
    public_key: str = Field(description="PEM (SubjectPublicKeyInfo)")


@router.get("/evidence/key", response_model=EvidenceKey)
async def evidence_key(ctx: Ctx, user: User) -> EvidenceKey:
    """The key bundles are signed with: pin it (`fencewatch evidence verify --key`)."""
    return EvidenceKey(**published(_key(ctx).public_key()))


@router.get("/alerts/{alert_id}/evidence", response_class=Response, responses=ZIP)
async def alert_evidence(ctx: Ctx, user: User, alert_id: int) -> Response:
    """The alert's episode, an hour either side: report.pdf, the fixes, the zones, the
    alert's timeline and dispositions and the rules in force, under a signed manifest."""
    async with ctx.pool.acquire() as conn:
        try:
            scope = await gather.alert_scope(conn, user.offices, alert_id)
        except gather.NotFound as exc:
            raise not_found(str(exc)) from None
        return _zip(await _export(ctx, user, conn, scope))


@router.get("/supervisees/{supervisee_id}/evidence", response_class=Response, responses=ZIP)
async def supervisee_evidence(
    ctx: Ctx,
    user: User,
    supervisee_id: str,
    start: Since,
    end: Until,
) -> Response:
    """The person's fixes and alerts in [from, to) (at most 31 days), with the rules in
    force, under a signed manifest."""
    try:
        scope = gather.person_scope(supervisee_id, start, end)
    except gather.Refused as exc:
        raise ApiError(422, str(exc)) from None
    async with ctx.pool.acquire() as conn:
        return _zip(await _export(ctx, user, conn, scope))


async def _export(ctx: Ctx, user: Principal, conn: Conn, scope: gather.Scope) -> Bundle:
    who = Exporter(user.subject, user.role, user.offices)
    try:
        return await export(
            conn,
            who,
            scope,
            ctx.settings.evidence_key_path,
            ctx.settings.timezone,
            Archive.of(ctx.settings),
        )
    except gather.NotFound as exc:
        raise not_found(str(exc)) from None
    except gather.Refused as exc:
        raise ApiError(422, str(exc)) from None
    except KeyProblem as exc:
        raise ApiError(503, f"evidence signing is unavailable: {exc}") from None


def _key(ctx: Ctx) -> Ed25519PrivateKey:
    try:
        return service_key(ctx.settings.evidence_key_path)
    except KeyProblem as exc:
        raise ApiError(503, f"evidence signing is unavailable: {exc}") from None


def _zip(bundle: Bundle) -> Response:
    return Response(
        bundle.data,
        media_type="application/zip",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(bundle.filename)}"},
    )
