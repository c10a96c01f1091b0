"""Every router, collected once under ``/api``; ``/metrics`` sits at the root for Prometheus.

How an endpoint declares its answer (one convention, FastAPI's recommended one):

* A JSON endpoint returns a pydantic response model and says so in its **return annotation**
  (``-> SalesToday``, ``-> list[UserOut]``), never with ``response_model=`` and never as a bare ``dict``.
  FastAPI validates and serializes the answer through that model, and ``/docs`` shows its shape. Every key
  the endpoint sends is a field of the model (an undeclared key would be dropped silently); a key that is
  sometimes left out is declared with :func:`api.models.omitted_when_none`.
* A handler that must build the ``Response`` itself (the ingest hot path writes its bytes, the sync upload
  and health choose their status, ``204`` answers have no body, ``/metrics`` is text) is annotated with the
  ``Response`` class it returns and documents each body in ``responses={status: {"model": Model}}``: there
  the model is documentation only, nothing is validated or filtered.
* A response model lives in its router's module, next to the handler that fills it (the AI router's
  snapshot models in :mod:`api.models`, with the small shared types: ``IsoTime``, ``Number``,
  ``FieldError``). Errors are :class:`api.errors.ErrorResponse`, declared with ``error_response``.

``tests/api/test_response_models.py`` holds every JSON operation of the OpenAPI schema to a 2xx body with
properties, and real answers to their declared models.
"""

from fastapi import APIRouter

from api.routes import admin, ai, auth, events, observability, sales, sync

api_router = APIRouter(prefix="/api")
api_router.include_router(auth.router)
api_router.include_router(events.router)
api_router.include_router(ai.router)
api_router.include_router(ai.status_router)
api_router.include_router(sales.router)
api_router.include_router(observability.router)
api_router.include_router(sync.router)
api_router.include_router(admin.router)

root_router = APIRouter()
root_router.include_router(observability.metrics_router)

__all__ = ["api_router", "root_router"]
