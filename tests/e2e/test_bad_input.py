"""Bad input over HTTP and through the CLI, one test per case.

Malformed input (not JSON, unknown type, missing or mistyped field, future schema_version,
oversize) is refused with an error naming the problem, and the log is unchanged (same head
offset). Rejected input (unknown memory, merge across namespaces) is well-formed: it is
appended, decided, and visible in the audit with its reason.

The server runs with small limits (2 KiB payloads, 64 KiB bodies); the CLI goes through
it, because the server holds the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from memstream.sdk import new_id

from .conftest import make_event


@dataclass(frozen=True)
class Malformed:
    body: Callable[[], bytes]
    field: str | None
    says: tuple[str, ...]
    #: the error code and HTTP status (oversize is 413, naming the limit)
    error: str = "malformed"
    status: int = 422


def _json(e: Any) -> bytes:
    return json.dumps(e).encode()


def _without(key: str) -> bytes:
    e = make_event()
    del e[key]
    return _json(e)


MALFORMED = {
    "malformed_json": Malformed(lambda: b'{"type": "create", oops}', None, ("not valid JSON",)),
    "unknown_type": Malformed(
        lambda: _json(make_event("remember", payload={"text": "x"})),
        "$.type",
        ("unknown event type 'remember'", "known types"),
    ),
    "missing_field": Malformed(
        lambda: _without("namespace"), "$.namespace", ("missing required field", "namespace")
    ),
    "mistyped_field": Malformed(
        lambda: _json(make_event(payload={"text": 42})),
        "$.payload.text",
        ("Expected `str`, got `int`",),
    ),
    "future_schema_version": Malformed(
        lambda: _json(make_event(schema_version=99)),
        "$.schema_version",
        ("schema_version 99", "newer", "upgrade memstream"),
    ),
    "oversize_payload": Malformed(
        lambda: _json(make_event(payload={"text": "x" * 5000})),
        "$.payload",
        ("over the limit of 2048 bytes", "max_event_bytes"),
        "too_large",
        413,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_http_malformed_is_refused_and_appends_nothing(strict_api, post, case):
    bad = MALFORMED[case]
    head = strict_api.head
    with strict_api.client() as c:
        r = post(c, bad.body())
    assert r.status_code == bad.status, r.text
    body = r.json()
    assert body["error"] == bad.error and body["field"] == bad.field and body["index"] is None
    if bad.status == 413:
        assert body["limit"] == 2048
    for phrase in bad.says:
        assert phrase in body["message"], body["message"]
    assert strict_api.head == head


@pytest.mark.parametrize("case", list(MALFORMED))
def test_cli_malformed_is_refused_and_appends_nothing(strict_api, cli, case):
    bad = MALFORMED[case]
    head = strict_api.head
    r = cli("publish", "-", "--store", str(strict_api.store), "--json", input=bad.body())
    assert r.code == 2, r.stderr
    body = r.json()
    assert body["error"] == bad.error and body["field"] == bad.field
    for phrase in bad.says:
        assert phrase in body["message"] and phrase in r.stderr
    assert strict_api.head == head


def test_http_malformed_event_in_a_batch_names_its_index(strict_api, post):
    head = strict_api.head
    batch = [make_event(), make_event(payload={"text": ["not", "a", "string"]}), make_event()]
    with strict_api.client() as c:
        r = post(c, batch)
    assert r.status_code == 422
    body = r.json()
    assert (body["index"], body["field"]) == (1, "$.payload.text")
    assert body["message"].startswith("event #1: ")
    assert strict_api.head == head  # the valid events around it were not appended either


def test_cli_malformed_json_line_names_index_and_line(strict_api, cli):
    head = strict_api.head
    lines = [json.dumps(make_event()), "", json.dumps(make_event(occurred_at="yesterday"))]
    r = cli("publish", "--store", str(strict_api.store), input="\n".join(lines) + "\n")
    assert r.code == 2
    assert "event #1" in r.stderr and "line 3" in r.stderr and "$.occurred_at" in r.stderr
    assert strict_api.head == head


def test_http_oversize_body_is_413(strict_api, post):
    head = strict_api.head
    batch = [make_event(payload={"text": "y" * 1500}) for _ in range(60)]  # ~100 KiB
    with strict_api.client() as c:
        r = post(c, batch)
    assert r.status_code == 413
    body = r.json()
    assert body["error"] == "too_large" and body["limit"] == 65536
    assert "--max-body-bytes" in body["message"]
    assert strict_api.head == head


@dataclass(frozen=True)
class Refused:
    setup: Callable[[str], list[dict[str, Any]]]
    code: str
    says: tuple[str, ...]


def _unknown_memory(tag: str) -> list[dict[str, Any]]:
    return [make_event("revise", memory_id=f"ghost-{tag}", payload={"text": "boo"})]


def _cross_namespace(tag: str) -> list[dict[str, Any]]:
    mine = make_event(namespace="user/alice", memory_id=f"mine-{tag}")
    theirs = make_event(namespace="team/ops", memory_id=f"theirs-{tag}")
    merge = make_event(
        "merge",
        namespace="user/alice",
        memory_id=f"merged-{tag}",
        payload={"sources": [f"mine-{tag}", f"theirs-{tag}"], "text": "both"},
    )
    return [mine, theirs, merge]


REJECTED = {
    "unknown_memory": Refused(_unknown_memory, "unknown_memory", ("does not exist",)),
    "merge_across_namespaces": Refused(
        _cross_namespace, "cross_namespace", ("team/ops", "one namespace")
    ),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_http_rejected_is_appended_and_audited(strict_api, post, case):
    bad = REJECTED[case]
    *setup, attempt = bad.setup(new_id()[-8:])
    with strict_api.client() as c:
        for e in setup:
            assert post(c, e).status_code == 200
        head = strict_api.head
        r = post(c, attempt)
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["code"] == bad.code
        for phrase in bad.says:
            assert phrase in body["message"]
        (outcome,) = body["outcomes"]
        assert outcome["offset"] == head + 1 and strict_api.head == head + 1
        audit = c.get(
            "/v1/audit", params={"memory_id": attempt["memory_id"], "min_offset": head + 1}
        ).json()["entries"]
        assert audit[-1]["event_id"] == attempt["event_id"]
        assert (audit[-1]["status"], audit[-1]["code"]) == ("rejected", bad.code)
        assert audit[-1]["reason"] == outcome["reason"]


@pytest.mark.parametrize("case", list(REJECTED))
def test_cli_rejected_exits_1_and_is_audited(strict_api, cli, case):
    bad = REJECTED[case]
    events = bad.setup(new_id()[-8:])
    store = str(strict_api.store)
    head = strict_api.head
    r = cli("publish", "--store", store, "--json", input=json.dumps(events))
    assert r.code == 1, r.stderr
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (len(events) - 1, 1)
    last = body["outcomes"][-1]
    assert (last["status"], last["code"]) == ("rejected", bad.code)
    assert strict_api.head == head + len(events)
    table = cli("publish", "--store", store, input=json.dumps(bad.setup(new_id()[-8:])))
    assert table.code == 1 and bad.code in table.stdout and "1 rejected" in table.stdout
    audit = cli(
        "audit", "--memory", events[-1]["memory_id"], "--status", "rejected", "--store", store,
        "--json",
    ).json()  # fmt: skip
    assert [(x["event_id"], x["code"]) for x in audit["entries"]] == [
        (events[-1]["event_id"], bad.code)
    ]
    for phrase in bad.says:
        assert phrase in audit["entries"][0]["reason"]
