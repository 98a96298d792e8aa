"""What a process without the API role serves on FENCEWATCH_HTTP: only /healthz and
/metrics. Apart from api.app, whose routes bring the reports', the evidence bundles' and
the archive's libraries (about 90 MB an ingest worker has no use for)."""

from __future__ import annotations

from fastapi import FastAPI

from api.context import ApiContext
from api.routes import health


def create_probe_app(ctx: ApiContext) -> FastAPI:
    """Health and metrics of an ingest or scheduler process, for the orchestrator's health
    check and Prometheus: a scaled deployment watches every worker, not only the API."""
    app = FastAPI(title="fencewatch worker", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.include_router(health.router)
    return app
