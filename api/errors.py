"""One error shape for every 4xx (and the 502/503 that name storage):
``{"error", "message", "detail": [{"field", "reason"}]}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.db.jobs import IdempotencyConflict
from models.db.pagination import CursorError
from models.domain.spec import FieldError, SpecError
from models.infra.storage_errors import StorageError
from models.service.submit import QuotaExceeded

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    502: "bad_gateway",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        fields: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []
        self.headers = headers


def error_response(
    status: int, message: str, fields: list[FieldError], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {
        "error": _CODES.get(status, "error"),
        "message": message,
        "detail": [{"field": f.field, "reason": f.reason} for f in fields],
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "body"
    parts = [str(p) for p in error.get("loc", ())]
    if len(parts) == 2 and parts[0] == "header":
        return parts[1]  # a header's own name ("Idempotency-Key"), capitals and all
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # Pydantic names union members ("list[...]", "SeedRange"); a client wants the field.
    parts = [p for p in parts if not ("[" in p or p[:1].isupper())]
    return ".".join(parts) or "body"


def _reason(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def validation_fields(errors: list[dict[str, Any]], prefix: str = "") -> list[FieldError]:
    seen: dict[str, FieldError] = {}
    for error in errors:
        name = prefix + _field_name(error)
        seen.setdefault(name, FieldError(name, _reason(error)))
    return list(seen.values())


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = validation_fields(list(exc.errors()))
        message = "; ".join(f"{f.field}: {f.reason}" for f in fields)
        return error_response(422, message, fields)

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        return error_response(422, str(exc), exc.errors)

    @app.exception_handler(QuotaExceeded)
    async def _quota(_: Request, exc: QuotaExceeded) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(429, exc.message, [exc.field], headers)

    @app.exception_handler(IdempotencyConflict)
    async def _idempotency(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        message = f"Idempotency-Key {exc.args[0]!r} was used with a different request body"
        return error_response(
            409, message, [FieldError("Idempotency-Key", "reused with a different body")]
        )

    @app.exception_handler(CursorError)
    async def _cursor(_: Request, exc: CursorError) -> JSONResponse:
        return error_response(400, str(exc), [FieldError("cursor", str(exc))])

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: StorageError) -> JSONResponse:
        # Not the client's fault: 502 when the store refused us (keys, bucket: an
        # operator must act), 503 when it failed or could not be reached (try again).
        if exc.permanent:
            return error_response(502, f"storage refused: {exc}", [FieldError("storage", str(exc))])
        return error_response(
            503,
            f"storage unavailable: {exc}",
            [FieldError("storage", str(exc))],
            {"Retry-After": "5"},
        )

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.fields, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), [], exc.headers)
