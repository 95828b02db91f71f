"""Property: no request the OpenAPI document allows, or almost allows, is a server error.

Schemathesis reads the API's own OpenAPI document and generates requests for every
operation: its examples, boundary values of every parameter (the coverage phase: huge
integers, empty and long strings, missing and extra fields), then random ones, both
conforming (positive) and breaking the schema in one place (negative). They go in-process
to the ASGI app of ``memstream serve`` over a real embedded store (search on, with a fast
embedder). Every answer must be below 500, and an error must be in the API's error shape
(``error`` and ``message``; a 400 names the ``field``).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import default_registry
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from memstream import MemoryStore
from memstream.http import create_app
from memstream.service import MemoryService

pytestmark = pytest.mark.slow

#: random examples per operation and mode (the examples and boundary values come on top)
EXAMPLES = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, hash_embedder) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("openapi")
    store = MemoryStore.open(
        root / "store", actor="fuzz", durability="os", read_wait=1.0, semantic=True,
        embedder=hash_embedder,
    )  # fmt: skip
    store.create("user/alice", "Alice drinks green tea", memory_id="m-live", tags=["a"])
    store.create("user/alice", "Alice works at ACME", memory_id="m-two")
    store.revise("m-live", "Alice drinks jasmine tea")
    try:
        yield store
    finally:
        assert store.verify() is None
        store.close()


@pytest.fixture(scope="module")
def app(served: MemoryStore) -> Any:
    return create_app(served)


def _document() -> dict[str, Any]:
    """The OpenAPI document of ``memstream serve`` (it depends on the event registry only,
    not on a store: the schema is built when the module is collected)."""
    backend = SimpleNamespace(codec=EventCodec(default_registry()), read_wait=1.0)
    return create_app(MemoryService(backend)).openapi()  # type: ignore[arg-type]


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES
)


def error_shape(ctx: Any, response: Any, case: Any) -> None:
    """Every error is the API's error shape; a 400 names its field."""
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict) and body.get("error") and body.get("message"), body
    if response.status_code == 400 and body["error"] == "bad_request":
        assert body.get("field"), body


@schema.parametrize()
@settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_is_a_server_error(app: Any, case: Any) -> None:
    # a subscription's event stream never ends by itself: read it for a second at most
    # (schemathesis keeps what came by then, and at most 20 events)
    stream = case.operation.path.endswith("/events") and case.method == "GET"
    response = case.call(app=app, **({"timeout": 1.0} if stream else {}))
    case.validate_response(response, checks=[not_a_server_error, error_shape])
