"""Property-based API tests with schemathesis, in-process (ASGI): for every operation in the OpenAPI
schema, generated requests (as an admin, then as a device) never get a server error and every response
matches its documented schema and content type. Bounded (a few examples per operation) to stay fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from api.main import create_app
from api.security import ALL_STORES, create_access_token
from chainsync.ops_store.users import create_device_key
from tests.api.conftest import bearer

# Status codes the security layer adds to any operation (401, 403, 413, 429) are not listed in every
# operation's responses, so status-code conformance is not checked; bodies and content types are.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def api_schema(settings, engine, snapshot) -> Iterator[schemathesis.BaseSchema]:  # type: ignore[no-untyped-def]
    # schemathesis' ASGI transport runs the app's lifespan around each call itself.
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


# schemathesis' own pytest plumbing (``from_fixture``) does not run on pytest 9 yet, so each operation's
# Hypothesis strategy is driven here directly.
@pytest.mark.slow
def test_api_conforms_to_its_schema(api_schema, settings, engine) -> None:  # type: ignore[no-untyped-def]
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
        @given(case=operation.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=_headers(case, settings, engine))
            if response.status_code == 503 and "detail" in response.json():
                return  # a documented "not ready" answer (e.g. no snapshot holds this mart yet)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them together
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
