"""Sensitive content on ingest: a namespace's policy tags, redacts or rejects what the
scanner finds; a redacted original stays sealed in the log, out of every projection and
index, and comes back only to a principal with a reveal grant."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from memstream import MemoryStore
from memstream.errors import Forbidden, SensitiveContent
from memstream.governance.screening import FINDINGS_KEY
from memstream.governance.tokens import Authenticator
from memstream.http import create_app

EMAIL = "alice.martin@example.org"
CARD = "4111 1111 1111 1111"
TEXT = f"Alice's email is {EMAIL} and she paid with {CARD}."


@pytest.fixture
def store(tmp_path: Path):
    with MemoryStore.open(tmp_path / "s", semantic=True, durability="os") as s:
        s.set_policy("clinic/*", sensitive="redact")
        s.set_policy("team/*", sensitive="tag")
        s.set_policy("vault", sensitive="reject")
        yield s


def test_no_policy_stores_the_text_as_written(store: MemoryStore) -> None:
    o = store.create("user/alice", TEXT)
    store.flush()
    m = store.get(o.memory_id)
    assert m.text == TEXT and FINDINGS_KEY not in m.metadata


def test_tag_keeps_the_text_and_records_what_was_found(store: MemoryStore) -> None:
    o = store.create("team/ops", TEXT, tags=["billing"])
    store.flush()
    m = store.get(o.memory_id)
    assert m.text == TEXT
    assert set(m.tags) == {"billing", "sensitive:email", "sensitive:card"}
    found = m.metadata[FINDINGS_KEY]
    assert found["action"] == "tag" and found["types"] == ["card", "email"]
    assert EMAIL not in str(found) and "4111" not in str(found)


def test_reject_appends_nothing_and_names_what_was_found(store: MemoryStore) -> None:
    head = store.head
    with pytest.raises(SensitiveContent) as e:
        store.create("vault", f"the api key is {EMAIL}")
    assert e.value.findings["types"] == ["email"] and EMAIL not in str(e.value)
    assert store.head == head
    store.create("vault", "nothing sensitive here")  # clean content goes through


def test_redact_keeps_the_original_sealed_for_reveal_only(
    store: MemoryStore, tmp_path: Path
) -> None:
    o = store.create("clinic/notes", TEXT, metadata={"contact": EMAIL}, tags=["patient"])
    store.revise(o.memory_id, f"Now reachable at {EMAIL} only.")
    store.flush()
    m = store.get(o.memory_id)
    assert EMAIL not in m.text and "<EMAIL_1>" in m.text
    assert m.metadata[FINDINGS_KEY]["action"] == "redact"
    # the revise kept its tags and metadata: screened and redacted too
    assert m.metadata["contact"] == "<EMAIL_1>" and "patient" in m.tags
    v1 = store.get(o.memory_id, version=1)
    assert CARD not in v1.text and "<CARD_1>" in v1.text
    # the owner may reveal; the original of each version comes back whole
    assert store.reveal(o.memory_id).text == f"Now reachable at {EMAIL} only."
    first = store.reveal(o.memory_id, version=1)
    assert first.text == TEXT and first.metadata == {"contact": EMAIL}
    # nowhere in a projection or an index: no search finds it by the value
    assert not [h for h in store.search(EMAIL, k=5, alpha=0.0) if h.memory.memory_id == o.memory_id]
    store.checkpoint()
    for path in (tmp_path / "s" / "state").rglob("*"):
        if path.is_file() and "access" not in path.parts:
            assert EMAIL.encode() not in path.read_bytes(), path
    # a principal needs reveal, read is not enough
    store.add_principal("nurse")
    store.grant("nurse", "read", "clinic/*")
    nurse = MemoryStore(store.runtime, principal="nurse", semantic=store.semantic,
                        views=store.views, usage=store.usage_tracker)  # fmt: skip
    assert EMAIL not in nurse.get(o.memory_id).text
    with pytest.raises(Forbidden) as refused:
        nurse.reveal(o.memory_id)
    assert refused.value.missing == "reveal on clinic/notes"
    store.grant("nurse", "reveal", f"memory:{o.memory_id}")
    assert nurse.reveal(o.memory_id).text == f"Now reachable at {EMAIL} only."
    # erased: the original goes with the memory's key
    store.erase(o.memory_id)
    store.flush()
    assert store.reveal(o.memory_id) is None or EMAIL not in (store.reveal(o.memory_id).text or "")


def test_reveal_and_reject_over_http(store: MemoryStore) -> None:
    client = TestClient(create_app(store, auth=Authenticator(store.backend.policy)))
    store.add_principal("dr")
    store.grant("dr", ["read", "write"], "clinic/*")
    _, token = store.issue_token("dr")
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/memories", json={"namespace": "clinic/notes", "text": TEXT},
                    headers=auth)  # fmt: skip
    assert r.status_code == 201
    mid = r.json()["memory_id"]
    store.flush()
    assert EMAIL not in client.get(f"/v1/memories/{mid}", headers=auth).json()["text"]
    r = client.get(f"/v1/memories/{mid}/original", headers=auth)
    assert r.status_code == 403 and r.json()["missing"] == "reveal on clinic/notes"
    store.grant("dr", "reveal", "clinic/*")
    assert client.get(f"/v1/memories/{mid}/original", headers=auth).json()["text"] == TEXT
    store.grant("dr", "write", "vault")
    r = client.post("/v1/memories", json={"namespace": "vault", "text": TEXT}, headers=auth)
    assert r.status_code == 422 and r.json()["error"] == "sensitive"
    assert set(r.json()["findings"]["types"]) == {"card", "email"}
