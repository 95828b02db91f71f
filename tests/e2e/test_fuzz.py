"""Property: no input to ``POST /v1/events`` crashes the server or changes the log.

Hypothesis sends arbitrary bytes, arbitrary JSON documents, and valid events with one
thing broken (a required field removed, an unknown field added, a field of the wrong
type). Every answer must be a client error (< 500) in the API's error shape, the server
must stay healthy, and the log must stay exactly as it was: the same head offset and an
intact hash chain.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import make_event

REQUIRED = ("event_id", "type", "schema_version", "namespace", "memory_id", "occurred_at", "actor")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def broken_events(draw: st.DrawFn) -> bytes:
    """A valid event with exactly one defect, alone or inside a batch of valid ones."""
    e: dict[str, Any] = make_event()
    defect = draw(st.sampled_from(["drop", "unknown_field", "wrong_type", "payload"]))
    if defect == "drop":
        del e[draw(st.sampled_from(REQUIRED))]
    elif defect == "unknown_field":
        name = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in e))
        e[name] = draw(json_values)
    elif defect == "wrong_type":
        key = draw(st.sampled_from(REQUIRED))
        e[key] = draw(
            json_values.filter(lambda v: not isinstance(v, str) and not isinstance(v, int))
        )
    else:
        e["payload"] = draw(
            json_values.filter(
                lambda v: not (isinstance(v, dict) and isinstance(v.get("text"), str))
            )
        )
    if draw(st.booleans()):
        return json.dumps(e).encode()
    position = draw(st.integers(0, 2))
    batch = [make_event(), make_event()]
    batch.insert(position, e)
    return json.dumps(batch).encode()


bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    broken_events(),
)


@pytest.fixture(scope="module")
def fuzz_client(api):
    with api.client(timeout=30) as c:
        yield c


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_arbitrary_bodies_never_crash_the_server_nor_change_the_log(fuzz_client, body):
    head = fuzz_client.get("/ready").json()["head"]
    r = fuzz_client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    error = r.json()
    assert error["error"] in ("malformed", "too_large") and error["message"]
    assert fuzz_client.get("/ready").json()["head"] == head


def test_after_fuzzing_the_server_is_healthy_and_the_chain_intact(api):
    with api.client(30) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert c.get("/ready").status_code == 200
        assert c.post("/v1/audit/verify").json()["ok"] is True
