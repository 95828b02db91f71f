"""Governance: principals and tokens, access checks through HTTP and the SDK, grants as
events (audited, replayed, asked about the past), and the bad cases: expired, revoked,
foreign and malformed tokens, forged actors, the reserved namespace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from memstream.schemas.events import GOVERNANCE_NAMESPACE

from memstream import MemoryStore, new_id
from memstream.errors import Forbidden, Rejected
from memstream.governance.tokens import Authenticator
from memstream.http import create_app
from memstream.service import Caller


def _open(path: Path, **kw) -> MemoryStore:
    return MemoryStore.open(path, semantic=False, durability="os", **kw)


@pytest.fixture
def store(tmp_path: Path):
    with _open(tmp_path / "s") as s:
        s.add_principal("alice")
        s.add_principal("bob", groups=["doctors"])
        s.grant("alice", "shared", "user/alice")
        s.grant("group:doctors", "read", "clinic/*")
        yield s


def _client(store: MemoryStore, owner: str | None = None) -> TestClient:
    auth = Authenticator(store.backend.policy, owner)
    return TestClient(create_app(store, auth=auth))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tokens ------------------------------------------------------------------------------------


def test_a_token_is_kept_only_as_a_salted_hash(store: MemoryStore, tmp_path: Path) -> None:
    token_id, token = store.issue_token("alice")
    _, again = store.issue_token("alice")
    secret = token.split("_", 2)[2]
    store.checkpoint()
    for path in (tmp_path / "s").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    rules = store.rules()
    assert [t.token_id for t in rules.tokens if t.principal == "alice"][0] == token_id
    assert "hash" not in json.dumps([t.__struct_fields__ for t in rules.tokens])
    hashes = [t.hash for t in store.backend.policy().tokens.values()]
    assert all(h.startswith("$argon2id$") for h in hashes) and len(set(hashes)) == 2
    assert token != again


def test_http_needs_a_token_for_everything_but_health(store: MemoryStore) -> None:
    client = _client(store)
    assert client.get("/health").status_code == 200
    for method, path in (("GET", "/ready"), ("GET", "/v1/status"), ("GET", "/v1/audit"),
                         ("POST", "/v1/search"), ("POST", "/v1/memories"), ("GET", "/v1/rules"),
                         ("GET", "/v1/memories/x")):  # fmt: skip
        r = client.request(method, path, json={})
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"] == "unauthenticated"


@pytest.mark.parametrize("case", ["revoked", "expired", "foreign", "malformed", "disabled",
                                  "wrong secret", "not bearer"])  # fmt: skip
def test_bad_tokens_are_refused(store: MemoryStore, tmp_path: Path, case: str) -> None:
    client = _client(store)
    token_id, token = store.issue_token("alice")
    header = _bearer(token)
    if case == "revoked":
        assert client.get("/v1/rules", headers=header).status_code == 200  # cached as valid
        store.revoke_token(token_id)
    elif case == "expired":
        _, token = store.issue_token("alice", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        header = _bearer(token)
    elif case == "foreign":
        with _open(tmp_path / "other") as other:
            other.add_principal("alice")
            _, token = other.issue_token("alice")
        header = _bearer(token)
    elif case == "malformed":
        header = _bearer("mst_nonsense")
    elif case == "disabled":
        store.add_principal("alice", disabled=True)
    elif case == "wrong secret":
        header = _bearer(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    elif case == "not bearer":
        header = {"Authorization": f"Basic {token}"}
    r = client.get("/v1/rules", headers=header)
    assert r.status_code == 401, r.text
    assert token not in r.text
    why = {"revoked": "revoked", "expired": "expired", "foreign": "unknown token",
           "malformed": "malformed", "disabled": "disabled", "wrong secret": "does not match",
           "not bearer": "Bearer"}[case]  # fmt: skip
    assert why in r.json()["message"]


def test_a_principal_rotates_its_own_tokens_but_no_one_elses(store: MemoryStore) -> None:
    client = _client(store)
    old_id, old = store.issue_token("alice")
    r = client.post("/v1/tokens", json={"principal": "alice"}, headers=_bearer(old))
    assert r.status_code == 201
    new = r.json()["token"]
    assert client.delete(f"/v1/tokens/{old_id}", headers=_bearer(new)).status_code == 200
    assert client.get("/v1/rules", headers=_bearer(old)).status_code == 401
    assert client.get("/v1/rules", headers=_bearer(new)).status_code == 200
    r = client.post("/v1/tokens", json={"principal": "bob"}, headers=_bearer(new))
    assert r.status_code == 403 and r.json()["missing"] == "admin on *"


# -- access checks -----------------------------------------------------------------------------


def test_a_refusal_names_the_missing_grant(store: MemoryStore) -> None:
    client = _client(store)
    _, token = store.issue_token("alice")
    m = store.create("clinic/diagnoses", "patient 7: mild flu")
    store.flush()
    r = client.get(f"/v1/memories/{m.memory_id}", headers=_bearer(token))
    assert r.status_code == 403
    assert r.json() | {"message": None} == {
        "error": "forbidden", "message": None, "missing": "read on clinic/diagnoses"
    }  # fmt: skip
    assert "memstream grant alice read clinic/diagnoses" in r.json()["message"]
    r = client.post("/v1/memories", json={"namespace": "user/bob", "text": "x"},
                    headers=_bearer(token))  # fmt: skip
    assert r.status_code == 403 and r.json()["missing"] == "write on user/bob"
    assert store.list_memories(namespace="user/bob").memories == []  # nothing appended


def test_the_actor_is_the_authenticated_principal_never_the_body(store: MemoryStore) -> None:
    client = _client(store)
    _, token = store.issue_token("alice")
    event = store.event("create", "user/alice", f"m-{new_id()}", {"text": "tea"}, actor="admin")
    r = client.post("/v1/events", content=store.codec.encode(event), headers=_bearer(token))
    assert r.status_code in (200, 201), r.text
    r = client.post("/v1/memories", json={"namespace": "user/alice", "text": "more tea"},
                    headers={**_bearer(token), "X-Memstream-Principal": "admin"})  # fmt: skip
    assert r.status_code == 201
    store.flush()
    actors = [e.actor for e in store.audit(namespace="user/alice").entries]
    assert actors == ["alice", "alice"]


def test_search_never_shows_or_counts_what_the_caller_cannot_read(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "s", semantic=True, durability="os") as s:
        s.add_principal("alice")
        s.grant("alice", "read", "user/alice")
        mine = s.create("user/alice", "Alice drinks green tea every morning")
        s.create("user/bob", "Bob drinks green tea every morning too")
        s.create("user/bob", "Bob's diagnosis: tea allergy")
        s.flush()
        alice = MemoryStore(s.runtime, principal="alice", semantic=s.semantic, views=s.views,
                            usage=s.usage_tracker)  # fmt: skip
        if True:  # the same runtime, as alice (the owner closes it)
            for kw in ({}, {"namespaces": ["user/bob"]}, {"namespaces": ["user/alice", "user/bob"]},
                       {"include_archived": True}, {"exact": True}, {"alpha": 0.0}):  # fmt: skip
                ids = [h.memory.memory_id for h in alice.search("green tea", k=10, **kw)]
                assert set(ids) <= {mine.memory_id}, kw
            assert [h.memory.memory_id for h in alice.search("tea")] == [mine.memory_id]
            # a grant on one memory makes it searchable, and only it
            other = s.list_memories(namespace="user/bob").memories[0].memory_id
            s.grant("alice", "read", f"memory:{other}")
            ids = {h.memory.memory_id for h in alice.search("tea", k=10)}
            assert ids == {mine.memory_id, other}
            with pytest.raises(Forbidden):
                alice.history(s.list_memories(namespace="user/bob").memories[1].memory_id)


def test_the_reserved_namespace_holds_no_memory(store: MemoryStore) -> None:
    with pytest.raises(Rejected, match="governance events"):
        store.create(GOVERNANCE_NAMESPACE, "sneaky")
    event = store.event("grant", "user/alice", "grant-x",
                        {"to": "alice", "object": "*", "modes": ["admin"]})  # fmt: skip
    (o,) = store.append([event])
    assert o.status == "rejected" and o.code == "governance_namespace"
    assert store.backend.policy().grants_of("alice")[0].object == "user/alice"


# -- rules as events ---------------------------------------------------------------------------


def test_rules_are_audited_replayed_and_answer_for_the_past(
    store: MemoryStore, tmp_path: Path
) -> None:
    store.create("clinic/diagnoses", "patient 7: mild flu")
    before = store.head
    gid = store.grant("alice", "read", "clinic/*", reason="covering for bob")
    store.revoke(store.rules().grants[1].grant_id, reason="bob left")  # doctors' grant
    store.flush()
    assert store.who_can("read", namespace="clinic/diagnoses") == ["alice"]
    assert store.who_can("read", namespace="clinic/diagnoses", as_of=before) == ["bob"]
    entries = store.audit(namespace=GOVERNANCE_NAMESPACE).entries
    assert [(e.type, e.actor) for e in entries][-2:] == [("grant", "sdk"), ("revoke", "sdk")]
    assert entries[-2].memory_id == gid and entries[-2].why == "covering for bob"
    # a replay of the log reaches the same rules, and a reopened store too
    replayed = store.replay(tmp_path / "copy")
    try:
        assert replayed.rules() == store.rules()
    finally:
        replayed.close()
    rules = store.rules()
    store.close()
    with _open(tmp_path / "s") as again:
        assert again.rules() == rules


def test_an_embedded_principal_is_checked_and_stamped(store: MemoryStore) -> None:
    store.flush()
    root = store.runtime.root
    store.close()
    with _open(root, principal="alice") as alice:
        o = alice.create("user/alice", "Alice likes tea", actor="bob")
        with pytest.raises(Forbidden):
            alice.create("user/bob", "x")
        with pytest.raises(Forbidden):
            alice.grant("alice", "admin", "*")
        with pytest.raises(Forbidden):
            alice.verify()
        alice.flush()
        assert alice.get(o.memory_id).created_by == "alice"
        assert [p.name for p in alice.rules().principals] == ["alice"]


def test_a_namespace_policy_drives_the_retention_scheduler(tmp_path: Path) -> None:
    with _open(tmp_path / "s", retention=True) as s:
        kept = s.create("team/ops", "the runbook")
        gone = s.create("team/ops", "an old incident note")
        other = s.create("user/alice", "Alice's note")
        s.set_policy("team/*", erase_after_expired_days=2, reason="incident notes: 2 days")
        s.expire(gone.memory_id)
        s.expire(other.memory_id)
        s.flush()
        later = datetime.now(UTC) + timedelta(days=3)
        report = s.run_retention(now=later)
        assert [d.memory_id for d in report.due] == [gone.memory_id], report
        assert report.accepted == 1
        s.flush()
        assert s.get(gone.memory_id).state == "erased"
        assert s.get(other.memory_id).state == "expired"  # no policy for user/*
        assert s.get(kept.memory_id).state == "active"
        entry = s.audit(memory_id=gone.memory_id).entries[-1]
        assert (entry.type, entry.actor) == ("erase", "memstream:scheduler")


# -- compliance exports ------------------------------------------------------------------------


def test_audit_and_permission_exports_parse_back(store: MemoryStore, tmp_path: Path) -> None:
    import csv

    m = store.create("user/alice", "Alice likes tea")
    store.revise(m.memory_id, "Alice likes green tea")
    store.create("user/bob", "Bob likes coffee")
    gid = store.grant("bob", "read", "user/alice", reason="covering for alice")
    store.revoke(gid, reason="alice is back")
    store.flush()
    n = store.export_audit(tmp_path / "a.jsonl", namespace="user/alice")
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert n == 2 and [r["type"] for r in rows] == ["create", "revise"]
    n = store.export_audit(tmp_path / "a.csv", format="csv", namespace="user/alice")
    with (tmp_path / "a.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert n == 2 and [r["memory_id"] for r in table] == [m.memory_id] * 2
    report = store.permission_changes(principal="bob")
    assert [(c.change, c.to, c.object, c.modes, c.reason) for c in report] == [
        ("principal", "bob", None, [], None),
        ("grant", "bob", "user/alice", ["read"], "covering for alice"),
        ("revoke", "bob", "user/alice", ["read"], "alice is back"),
    ]
    assert [c.change for c in store.permission_changes(namespace="user/alice")] == [
        "grant", "grant", "revoke"
    ]  # fmt: skip
    store.export_audit(tmp_path / "p.csv", format="csv", permissions=True)
    with (tmp_path / "p.csv").open(newline="") as handle:
        changes = list(csv.DictReader(handle))
    assert [c["change"] for c in changes][-2:] == ["grant", "revoke"]
    assert changes[-1]["target"] == gid and changes[-1]["to"] == "bob"


def test_exports_over_http_are_streamed_and_checked(store: MemoryStore) -> None:
    client = _client(store)
    _, alice = store.issue_token("alice")
    store.create("user/alice", "Alice likes tea")
    store.create("clinic/x", "a diagnosis")
    store.flush()
    r = client.get("/v1/audit/export", params={"namespace": "user/alice"}, headers=_bearer(alice))
    assert r.status_code == 403 and r.json()["missing"] == "audit on user/alice"
    store.grant("alice", "audit", "user/alice")
    r = client.get("/v1/audit/export", params={"namespace": "user/alice", "format": "csv"},
                   headers=_bearer(alice))  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.count("\n") == 2 and "clinic/x" not in r.text
    r = client.get("/v1/audit/export", params={"report": "permissions"}, headers=_bearer(alice))
    assert r.status_code == 403  # the whole report takes audit on the store
    r = client.get("/v1/permissions", params={"namespace": "user/alice"}, headers=_bearer(alice))
    assert r.status_code == 200 and {c["change"] for c in r.json()} == {"grant"}


def test_a_refusal_and_an_export_are_in_the_access_log(store: MemoryStore, tmp_path: Path) -> None:
    m = store.create("clinic/diagnoses", "patient 7: mild flu")
    store.flush()
    svc, alice = store.service, Caller.principal_of("alice")  # the store's own service
    with pytest.raises(Forbidden):
        svc.get(alice, m.memory_id)
    with pytest.raises(Forbidden):
        svc.grant(alice, "alice", ["read"], "clinic/*")
    store.export_audit(tmp_path / "a.jsonl", namespace="clinic/diagnoses")
    store.service.accesses.flush()
    denied = store.access_log(action="denied").records
    assert [(r.principal, r.objects, r.detail["missing"]) for r in denied] == [
        ("alice", [m.memory_id], "read on clinic/diagnoses"),
        ("alice", [], "admin on clinic/*"),
    ]
    (export,) = store.access_log(action="audit_export").records
    assert export.namespaces == ["clinic/diagnoses"] and export.principal == "sdk"


def test_one_line_writes_take_a_ttl_an_expiry_time_and_retention(store: MemoryStore) -> None:
    client = TestClient(create_app(store))
    body = {"namespace": "user/alice", "text": "parking spot 12 today",
            "ttl_seconds": 3600, "expires_at": "2031-01-01T00:00:00Z", "retention_days": 7}  # fmt: skip
    r = client.post("/v1/memories", json=body)
    assert r.status_code == 201, r.text
    m = store.get(r.json()["memory_id"], min_offset=r.json()["offset"])
    assert (m.ttl_seconds, m.retention_days) == (3600, 7)
    assert m.expires_at == datetime(2031, 1, 1, tzinfo=UTC)
    r = client.post("/v1/memories", json={**body, "expires_at": "2031-01-01T00:00:00"})
    assert r.status_code == 400 and "expires_at" in r.json()["field"]
