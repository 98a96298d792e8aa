"""One error shape for every failure: `{"error": "<plain words>", "detail": ...}`.

Bad input is always a 4xx with the reason: request validation, unknown references caught
by the database's foreign keys, and duplicates caught by its unique indexes.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found (or outside your offices)")


# Documented on every /api/v1 route so integrators see the error shape in the OpenAPI.
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (401, "missing, invalid, expired or revoked token"),
        (403, "the token's role may not do this"),
        (404, "no such object in the caller's offices"),
        (409, "conflicts with the current state"),
        (413, "the request body is larger than this request allows (api.limits)"),
        (422, "malformed request, with the reason"),
    )
}


def _json(status: int, error: str, detail: Any = None, headers: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(exc.status, exc.error, exc.detail, headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return _json(exc.status_code, str(exc.detail), headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"where": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
    ]
    first = problems[0] if problems else {"where": "request", "reason": "invalid"}
    return _json(422, f"invalid request: {first['where']}: {first['reason']}", problems)


# The database's own words (table, constraint and column names, the values compared) stay
# in the log: a caller is told what kind of problem the request has, never the driver text.


async def _integrity_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, asyncpg.IntegrityConstraintViolationError)
    log.info("request refused by the database: %s", getattr(exc, "detail", None) or exc)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return _json(409, "already in use: a value in the request must be unique and is taken")
    return _json(422, "refers to something that does not exist or is not allowed")


async def _unstorable(_: Request, exc: Exception) -> JSONResponse:
    # A number beyond bigint or a NUL character got past validation: the request's fault.
    log.info("request value refused by the database: %s", exc)
    return _json(
        422, "a value in the request cannot be stored or compared (out of range, or a NUL)"
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in the API", exc_info=exc)
    return _json(500, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(asyncpg.IntegrityConstraintViolationError, _integrity_error)
    app.add_exception_handler(asyncpg.DataError, _unstorable)
    app.add_exception_handler(OverflowError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)
