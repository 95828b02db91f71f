"""Bad parameters over HTTP are a 400 naming the field, never a 500; and an unexpected
error is a 500 in the API's error shape that does not reach the server (which would drop
the client's keep-alive connection)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from memstream import MemoryStore
from memstream.http import create_app

HUGE = "1" * 40

CASES = [
    ("get", f"/v1/memories/m-1/history?as_of={HUGE}", None, "as_of"),
    ("get", f"/v1/memories/m-1?as_of={HUGE}", None, "as_of"),
    ("get", f"/v1/memories/m-1?as_of=-{HUGE}", None, "as_of"),
    ("get", f"/v1/memories/m-1?version={HUGE}", None, "version"),
    ("get", f"/v1/memories/m-1?min_offset={HUGE}", None, "min_offset"),
    ("get", "/v1/memories/m-1?min_offset=1000", None, "min_offset"),
    ("get", "/v1/memories/m-1?as_of=2026-01-01T00:00:00", None, "as_of"),
    ("get", f"/v1/audit?after={HUGE}", None, "after"),
    ("get", f"/v1/audit?as_of={HUGE}", None, "as_of"),
    ("get", "/v1/audit?since=2026-01-01", None, "since"),
    ("get", f"/v1/audit?partition={HUGE}", None, "partition"),
    ("post", "/v1/search", {"query": "tea", "as_of": HUGE}, "as_of"),
    ("post", "/v1/search", {"query": "tea", "min_offset": 2**64}, "min_offset"),
    (
        "post",
        "/v1/search",
        {"query": "tea", "created_after": "2026-01-01T00:00:00"},
        "created_after",
    ),
    ("post", "/v1/replay", {"into": "/tmp/x-never", "to": HUGE}, "to"),
]


@pytest.fixture
def client(store: MemoryStore):
    store.create("user/alice", "Alice drinks green tea", memory_id="m-1")
    app = create_app(store)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("method, url, body, field", CASES)
def test_bad_parameter_is_400_naming_the_field(client, store, method, url, body, field):
    head = store.head
    r = client.request(method.upper(), url, json=body)
    assert r.status_code == 400, r.text
    got = r.json()
    assert got["error"] == "bad_request" and field in got["field"], got
    assert field in got["message"] or field.replace("_", " ") in got["message"], got
    assert store.head == head


def test_unexpected_error_is_a_500_that_stays_in_the_app(client):
    # TestClient re-raises what reaches the server; ContainErrors keeps it in the app
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "message": "internal error (RuntimeError); "
                        "see the server log"}  # fmt: skip
    assert client.get("/health").status_code == 200
