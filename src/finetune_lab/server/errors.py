"""The one error shape of the API, and the handlers that give every failure that shape."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("finetune_lab.server")

STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


#: What SQLAlchemy raises when the database cannot be reached (down, restarting, pool empty).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)


class APIError(Exception):
    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type or STATUS_TYPES.get(status_code, "error")
        self.message = message
        self.details = details
        self.headers = headers


def not_found(what: str = "job") -> APIError:
    return APIError(404, f"{what} not found")


def validation_error(message: str, details: Any = None) -> APIError:
    return APIError(422, message, details=details)


def error_response(
    status_code: int,
    type: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"type": type, "message": message}
    if details is not None:
        error["details"] = details
    return Response(
        orjson.dumps({"error": error}, default=str),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """A readable message (naming the first error) and plain details from pydantic errors."""
    details = [
        {
            "loc": list(err.get("loc", ())),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors
    ]
    if not details:
        return "invalid request", details
    first = details[0]
    where = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
    message = f"{where}: {first['message']}" if where else first["message"]
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return message, details


def describe_database_error(exc: Exception) -> str:
    """The driver's first line (e.g. "connection refused"), without SQLAlchemy's SQL dump."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def database_unavailable(method: str, path: str, exc: Exception) -> Response:
    """The database is down, restarting or overloaded: a transient 503 clients retry (the SDK
    does), answered without dropping the connection, not a 500 with a traceback."""
    log.error("database unavailable on %s %s: %s", method, path, describe_database_error(exc))
    return error_response(
        503,
        "database_unavailable",
        "the database is unavailable; retry shortly",
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> Response:
        return error_response(exc.status_code, exc.type, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(err.get("type") == "json_invalid" for err in errors):
            return error_response(400, "bad_request", "request body is not valid JSON")
        message, details = describe_validation_errors(errors)
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        headers = dict(exc.headers) if exc.headers else None
        kind = STATUS_TYPES.get(exc.status_code, "error")
        return error_response(exc.status_code, kind, message, headers=headers)

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        # Last line of defence: schema validation should have refused the value already.
        log.warning(
            "database refused a value on %s %s: %s", request.method, request.url.path, exc.orig
        )
        return error_response(422, "validation_error", "a value in the request cannot be stored")

    async def _database_unavailable(request: Request, exc: Exception) -> Response:
        return database_unavailable(request.method, request.url.path, exc)

    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _database_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        request_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", request_id, request.method, request.url.path)
        return error_response(
            500, "internal_error", f"internal server error (request id {request_id})"
        )
