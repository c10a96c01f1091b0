"""The OpenAPI schema's additions: the ingest bodies and the security layer's answers.

The ingest routes read the raw body (to answer a batch item by item), so FastAPI cannot infer their request
schema; it is added here from the shared event models. The firewall, the authentication dependency and
the request-context middleware answer any operation with 401/403/413/422/429 (bodies from
:mod:`api.errors`), which no route declares itself; they are added to every operation they can reach, so
clients and schemathesis' status-code check see them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from api.errors import ErrorResponse
from chainsync.schemas.events import InventoryEvent, SaleEvent

INGEST_BODIES: dict[str, type] = {"/api/events/sales": SaleEvent, "/api/events/inventory": InventoryEvent}
REF = "#/components/schemas/{model}"

VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
        "request_id": {"type": ["string", "null"]},
    },
    "required": ["detail", "errors"],
}


# Errors raised by routes that read their body raw or by the serving snapshot, which the routes do not
# declare themselves (``responses=`` on the decorator is the place for new routes: api.errors.error_response).
_INGEST_INVALID = "An invalid event (field errors listed) or batch envelope (the reason only)"
ROUTE_ERRORS: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/api/events/sales"): {"400": "The body is not JSON", "422": _INGEST_INVALID},
    ("post", "/api/events/inventory"): {"400": "The body is not JSON", "422": _INGEST_INVALID},
    ("post", "/api/sync/upload"): {"400": "The body is not JSON"},
    ("get", "/api/sync/download"): {"400": "Invalid cursor", "410": "Stale cursor: start a full download"},
    ("get", "/api/ai/forecast"): {"404": "No forecast for this store or product in the current snapshot"},
    ("get", "/api/ai/anomalies"): {"404": "No anomalies for this store in the current snapshot"},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 0},
}


def _error(description: str, schema: str = "ErrorResponse", **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
    }
    if headers:
        response["headers"] = {name.replace("_", "-"): header for name, header in headers.items()}
    return response


UNAUTHORIZED = _error(
    "Not authenticated: credentials missing, invalid, expired or revoked",
    WWW_Authenticate={"required": True, "schema": {"type": "string"}},
)
FORBIDDEN = _error(
    "Refused: the address is denied or blocked (then with Retry-After), or the caller's role or stores do "
    "not allow this",
    Retry_After=_RETRY_AFTER,
)
UNPARSABLE = _error("The body cannot be parsed (not JSON or not UTF-8)")
TOO_LARGE = _error("The request body exceeds CHAINSYNC_MAX_BODY_BYTES")
INVALID = _error("The request is invalid: each field error named", "HTTPValidationError")
RATE_LIMITED = _error(
    "Rate limit exceeded (per address, login address, user or device)",
    Retry_After={**_RETRY_AFTER, "required": True},
)


def add_security_responses(spec: dict[str, Any]) -> None:
    """Document the security layer's answers on every operation: 403 and 429 anywhere (IP lists, risk
    blocks, rate limits run before routing), 401 where credentials are checked (operations with a security
    requirement, and the token endpoints), 400 and 413 where a body is read, 422 where input is validated; and
    :data:`ROUTE_ERRORS`. A response a route documents itself is kept."""
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch", "head", "options"):
                continue
            responses = operation.setdefault("responses", {})
            shared = {"403": FORBIDDEN, "429": RATE_LIMITED}
            if operation.get("security") or path.startswith("/api/auth/"):
                shared["401"] = UNAUTHORIZED
            if "requestBody" in operation:
                shared["400"] = UNPARSABLE
            if "requestBody" in operation or method in ("post", "put", "patch"):
                shared["413"] = TOO_LARGE
            if "requestBody" in operation or operation.get("parameters"):
                shared["422"] = INVALID
            for code, description in ROUTE_ERRORS.get((method, path), {}).items():
                shared[code] = _error(description)
            for code, response in shared.items():
                responses.setdefault(code, response)


def _body_schema(model: type, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(model).json_schema(ref_template=REF, mode="validation")
    components.update(schema.pop("$defs", {}))
    name = model.__name__
    components[name] = schema
    ref = {"$ref": REF.format(model=name)}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        ref,
                        {
                            "type": "object",
                            "title": f"{name}Batch",
                            "properties": {"events": {"type": "array", "items": ref, "minItems": 1}},
                            "required": ["events"],
                            "additionalProperties": False,
                        },
                    ]
                }
            }
        },
    }


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            # The 422 body is api.errors' (detail text, field errors, request id), not FastAPI's default.
            components["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            components["ErrorResponse"] = TypeAdapter(ErrorResponse).json_schema(ref_template=REF)
            for path, model in INGEST_BODIES.items():
                operation = spec.get("paths", {}).get(path, {}).get("post")
                if operation is not None:
                    operation["requestBody"] = _body_schema(model, components)
            add_security_responses(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
