"""Probes for the operator and the monitoring stack: /healthz and /metrics (spec 4.3)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

# Registers fencewatch's metrics, so /metrics lists them before the first fix arrives.
import fencewatch.metrics  # noqa: F401
from api.context import Ctx

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


class Health(BaseModel):
    ok: bool
    components: dict[str, bool]
    failed: list[str] = []


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a component is unreachable"}},
)
async def healthz(ctx: Ctx) -> JSONResponse:
    """200 when ingest, database, Redis and broker are all reachable, else 503."""
    try:
        components = await ctx.health()
    except Exception:
        log.exception("health check failed")
        components = {"health_check": False}
    failed = sorted(name for name, up in components.items() if not up)
    body = Health(ok=not failed, components=components, failed=failed)
    return JSONResponse(body.model_dump(), status_code=503 if failed else 200)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
