"""Error responses: every error body is JSON with ``detail`` and the ``request_id``; validation errors
list ``{"field", "message"}`` pairs; unexpected exceptions never show a stack trace."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.log import get_logger
from api.middleware import route_template_of
from api.security.audit import record_security_event
from api.security.principals import AccessDenied
from chainsync.schemas.events import id_error_message

log = get_logger("api.errors")

_LOCATIONS = {"body", "query", "path", "header", "cookie"}


class ErrorResponse(BaseModel):
    """Every error body: the reason and the request id (a validation error adds ``errors``)."""

    detail: str
    request_id: str | None = None


def error_response(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for an error a route raises itself, e.g.
    ``responses={404: error_response("No such user")}``."""
    return {"model": ErrorResponse, "description": description}


def request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def field_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Turn pydantic error dicts into ``[{"field": "lines.0.quantity", "message": ...}]``.

    Errors from a whole-object rule (no location) are reported on the field ``(event)``."""
    out: list[dict[str, str]] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        message = id_error_message(err) or str(err.get("msg", "invalid"))
        out.append({"field": ".".join(loc) or "(event)", "message": message})
    return out


def validation_error_response(request: Request, errors: list[dict[str, str]], detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "errors": errors, "request_id": request_id(request)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail, "request_id": request_id(request)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _access_denied(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AccessDenied)
    settings = request.app.state.settings
    if settings.security_audit_enabled:
        subject = exc.subject
        await run_in_threadpool(
            partial(
                record_security_event,
                request.app.state.engine,
                kind="authorization_denied",
                outcome="denied",
                username=None if subject.startswith("device:") else subject,
                actor=subject,
                role=exc.role,
                method=request.method,
                route=route_template_of(request.scope),
                source_ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
                detail=f"{request.method} {route_template_of(request.scope)} by {subject}: {exc.detail}"[
                    :1024
                ],
            )
        )
    return await _http_exception(request, exc)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors = field_errors(list(exc.errors()))
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return validation_error_response(request, errors, f"Invalid request: {summary}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Normally answered by RequestContextMiddleware; this is the backstop for the outermost layer.
    log.error("unhandled_error", error_type=type(exc).__name__)
    rid = request_id(request)
    return JSONResponse(
        {"detail": "Internal server error", "request_id": rid},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        headers={"X-Request-ID": rid} if rid else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AccessDenied, _access_denied)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(Exception, _unexpected)
