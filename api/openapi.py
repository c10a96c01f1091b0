"""OpenAPI for the ingest bodies. The ingest routes read the raw body (to answer a batch item by item),
so FastAPI cannot infer their request schema; it is added here from the shared event models."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

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
            for path, model in INGEST_BODIES.items():
                operation = spec.get("paths", {}).get(path, {}).get("post")
                if operation is not None:
                    operation["requestBody"] = _body_schema(model, components)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
