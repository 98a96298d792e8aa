"""Probes for the operator and the monitoring stack: /healthz and /metrics (spec 4.3)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from api.context import Ctx
from api.probe import health_report

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
    body, status = await health_report(ctx.health)
    return JSONResponse(Health(**body).model_dump(), status_code=status)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
