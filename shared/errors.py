"""One error shape for every error: {"error": {"code": "...", "message": "..."}} with the right status."""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.schemas import ErrorPublic

log = logging.getLogger("slm")

CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class APIError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.fields = (
            status,
            code,
            message,
            headers,
            fields,
        )


def _printable(text: str) -> str:
    """The text with anything that is not Unicode (an unpaired surrogate a client sent) as "?": an error
    may name what it refuses, and a JSON answer must encode as UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": _printable(message)}
    if fields:
        error["fields"] = {_printable(k): _printable(v) for k, v in fields.items()}
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    fields: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, fields), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting these error statuses with the one error shape."""
    return {status: {"model": ErrorPublic, "description": HTTPStatus(status).phrase} for status in statuses}


# What any route may answer: a body that is not JSON (or not sent as JSON), too large or invalid, an
# error, the database away.
COMMON_ERRORS = error_responses(400, 413, 415, 422, 500, 503)


def not_found(what: str = "Resource") -> APIError:
    return APIError(404, "not_found", f"{what} not found")


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, fields=exc.fields)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODES.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"))
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such route"
    elif exc.status_code == 405:
        detail = "Method not allowed on this route"
    return error_response(exc.status_code, code, detail, headers=getattr(exc, "headers", None))


def _json_type(content_type: str) -> bool:
    """Whether a Content-Type names JSON (application/json, or a type ending in +json), as FastAPI reads it."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "The request body is not valid JSON")
    content_type = request.headers.get("content-type")
    if (
        content_type
        and not _json_type(content_type)
        and any(e.get("loc", ())[:1] == ("body",) for e in errors)
    ):
        # FastAPI reads such a body as no JSON at all: "Input should be a valid dictionary" said nothing useful
        message = f"The request body must be JSON (Content-Type: application/json), not {content_type.split(';')[0]}"
        return error_response(415, "unsupported_media_type", message)
    fields: dict[str, str] = {}
    for e in errors:
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        fields.setdefault(_field_name(tuple(e.get("loc", ()))), message)
    summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return error_response(422, "validation_error", f"Invalid request: {summary}", fields=fields)


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database unavailable: %s", exc.orig)
        return error_response(
            503,
            "database_unavailable",
            "The database is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    log.exception("database error")
    return error_response(500, "internal_error", "Internal server error")


async def _pool_full(_: Request, exc: Exception) -> JSONResponse:
    log.warning("no database connection free: %s", exc)
    return error_response(
        503, "database_busy", "The server is busy; try again shortly", headers={"Retry-After": "2"}
    )


def internal_error(exc: Exception) -> JSONResponse:
    """The 500 for an exception nothing else handled, logged with its traceback."""
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "Internal server error")


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    # only what escapes shared.app.UnhandledErrorMiddleware lands here: an exception in a middleware
    # outside it (this answer, sent by Starlette's outermost layer, carries no middleware's headers)
    return internal_error(exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_full)  # every pooled connection busy: 503, never a 500
    app.add_exception_handler(Exception, _unhandled)
