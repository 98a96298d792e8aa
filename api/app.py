"""The HTTP API (spec 4.3): `create_app(ctx)` builds it for the service to mount or a
test to drive; everything it needs arrives in `ctx`. A process without the API role
serves api.probe's app: only /healthz and /metrics."""

from __future__ import annotations

from fastapi import FastAPI

from api import console, docs, errors
from api.context import ApiContext
from api.limits import BodyLimit
from api.routes import (
    alerts,
    assessment,
    audit,
    checkins,
    commands,
    devices,
    evidence,
    health,
    heightened,
    leaves,
    locate,
    offices,
    orders,
    proximity,
    reports,
    supervisees,
    suspensions,
    track,
    zones,
)

API_PREFIX = "/api/v1"


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="fencewatch",
        version="1",
        summary="GPS electronic monitoring and geofences for community corrections (社区矫正)",
        docs_url=None,  # replaced by docs.mount: the default page loads assets from a CDN
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)
    app.add_middleware(BodyLimit)
    for module in (
        alerts,
        supervisees,
        devices,
        zones,
        track,
        leaves,
        suspensions,
        orders,
        proximity,
        heightened,
        checkins,
        offices,
        audit,
        evidence,
    ):
        app.include_router(module.router, prefix=API_PREFIX, responses=errors.RESPONSES)
    for module in (commands, locate, reports, assessment):  # alerting and duties (issue 6)
        app.include_router(module.router, prefix=API_PREFIX, responses=errors.RESPONSES)
    app.include_router(health.router)
    docs.mount(app)
    console.mount(app, API_PREFIX, ctx.settings)  # last: it serves the page at `/`
    return app
