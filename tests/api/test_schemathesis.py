"""Property-based API tests with schemathesis, in-process (ASGI): for every operation in the OpenAPI
schema, generated requests (as an admin, or as a device on the device routes) never get a server error,
and every response has a documented status code, and matches its documented schema, content type and
headers (``Retry-After`` on 429). Invalid requests (negative mode) must be refused with a 4xx. Bounded
(a few examples per operation and mode) to stay fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import negative_data_rejection

from api.main import create_app
from api.security.tokens import ALL_STORES, create_access_token
from chainsync.ops_store.users import create_device_key
from tests.api.conftest import bearer

# The security layer's answers (401/403/413/422/429, Retry-After) are documented on every operation
# (api/openapi.py), so status codes and headers are checked along with bodies and content types.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# Invalid input (wrong types, missing or extra fields, out-of-range values) must be refused with a 4xx.
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]
# A batch of events answers 200 item by item ("rejected" with the field and reason), by design: a bad
# item does not sink the good ones. Only the single-event form must answer 422, which the other checks see.
PER_ITEM_ANSWERS = ("/api/events/sales", "/api/events/inventory")


@pytest.fixture
def api_schema(settings, engine, snapshot) -> Iterator[schemathesis.BaseSchema]:  # type: ignore[no-untyped-def]
    # schemathesis' ASGI transport runs the app's lifespan around each call itself.
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


# schemathesis' own pytest plumbing (``from_fixture``) does not run on pytest 9 yet, so each operation's
# Hypothesis strategy is driven here directly.
@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(api_schema, settings, engine, mode) -> None:  # type: ignore[no-untyped-def]
    negative = mode is GenerationMode.NEGATIVE
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    failures: list[str] = []
    for operation in operations:

        @hyp_settings(
            max_examples=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=_headers(case, settings, engine))
            if response.status_code == 503 and "detail" in response.json():
                return  # a documented "not ready" answer (e.g. no snapshot holds this mart yet)
            per_item = case.path in PER_ITEM_ANSWERS
            case.validate_response(response, checks=NEGATIVE_CHECKS if negative and not per_item else CHECKS)

        try:
            run()
        except Unsatisfiable:
            assert negative, f"{operation.method.upper()} {operation.path}: no valid input could be generated"
            continue  # no parameters and no body: nothing to make invalid
        # Collect every operation's failure, then report them together. schemathesis' FailureGroup is a
        # BaseExceptionGroup, which ``except Exception`` does not catch.
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def _headers(case, settings, engine) -> dict[str, str]:  # type: ignore[no-untyped-def]
    if case.path.startswith(("/api/events", "/api/sync/upload", "/api/sync/download")):
        return {"X-API-Key": _device_key(engine)}
    # A fresh token per case: a generated logout revokes the token it is called with.
    token = create_access_token(settings, subject="alice", role="admin", stores=[ALL_STORES]).token
    return bearer(token)


_KEYS: dict[str, str] = {}


def _device_key(engine) -> str:  # type: ignore[no-untyped-def]
    key = _KEYS.get(str(engine.url))
    if key is None:
        key = _KEYS[str(engine.url)] = create_device_key(engine, "S001", "POS-01")
    return key
