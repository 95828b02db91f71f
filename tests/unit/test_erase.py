"""Crypto-shredding: erase destroys the subject's key; plaintext disappears from every
projection and can no longer be read from the log; the audit keeps who, when and why."""

from __future__ import annotations

import sqlite3

import pytest
from memstream.projections.decide import decide
from memstream.schemas.memcube import Logged

from memstream import MemoryStore
from memstream.errors import MemoryErased, MemoryFrozen


def test_erase_shreds_the_subject_everywhere(store: MemoryStore, snapshot, tmp_path):
    a = store.create("user/alice", "Alice's diagnosis is confidential", subject="person/alice")
    store.revise(a.memory_id, "Alice's diagnosis, revised", reason="doctor's note about Alice")
    b = store.create("user/alice", "Alice's address", subject="person/alice")
    other = store.create("user/alice", "team lunch is on Friday")
    out = store.erase(a.memory_id, reason="GDPR art. 17 request #42")
    assert out.accepted and out.state == "erased"

    for mid in (a.memory_id, b.memory_id):
        m = store.get(mid, min_offset=out.offset)
        assert m.state == "erased" and m.text is None and m.tags == []
        assert all(v.text is None and v.content_hash is None for v in store.history(mid))
    assert store.get(other.memory_id).text == "team lunch is on Friday"

    # The key is gone from the key store, and the log's records are tombstones now.
    keys = sqlite3.connect(store.path / "keys.sqlite")
    rows = keys.execute("SELECT kid, key FROM keys WHERE subject = 'person/alice'").fetchall()
    assert rows and all(key is None for _, key in rows)
    for batch in store.runtime.log.read(0, out.offset):
        for r in batch:
            ev, _ = store.runtime.sealer.open(r.data)
            if ev.memory_id in (a.memory_id, b.memory_id):
                assert ev.payload is None
            else:
                assert ev.payload is not None

    # Who, when and why stay; the reasons written under the key do not.
    entries = {e.type: e for e in store.audit(memory_id=a.memory_id).entries}
    assert entries["erase"].why == "GDPR art. 17 request #42"
    assert entries["erase"].actor == "tester"
    assert entries["revise"].why is None

    # Nothing changes an erased memory; a replay reaches the same state from tombstones.
    with pytest.raises(MemoryErased):
        store.revise(b.memory_id, "resurrect")
    with store.replay(tmp_path / "replay") as replica:
        assert snapshot(replica) == snapshot(store)


def test_the_subject_gets_a_new_key_after_erasure(store: MemoryStore):
    a = store.create("user/bob", "old fact")
    store.erase(a.memory_id)
    fresh = store.create("user/bob", "new fact")
    assert fresh.accepted
    assert store.get(fresh.memory_id, min_offset=fresh.offset).text == "new fact"
    kids = [k for (k,) in sqlite3.connect(store.path / "keys.sqlite").execute(
        "SELECT kid FROM keys WHERE subject = 'user/bob' ORDER BY generation")]  # fmt: skip
    assert kids == ["user/bob#1", "user/bob#2"]


def test_a_frozen_memory_blocks_erasure_of_its_subject(store: MemoryStore):
    a = store.create("user/carol", "under legal hold")
    b = store.create("user/carol", "same subject")
    store.freeze(a.memory_id, reason="litigation hold")
    with pytest.raises(MemoryFrozen, match=a.memory_id):
        store.erase(b.memory_id)
    assert store.get(b.memory_id, min_offset=store.head).text == "same subject"


def test_a_payload_sealed_under_a_destroyed_key_is_rejected(store: MemoryStore):
    rt = store.runtime
    a = store.create("user/dave", "first")
    late = store.event("revise", "user/dave", a.memory_id, {"text": "sealed before the erase"})
    data, kid, chash = rt.sealer.seal(late)  # sealed under generation 1
    store.erase(a.memory_id)
    b = store.create("user/dave", "second life")  # generation 2
    stale = store.event("create", "user/dave", "dave-late", {"text": "late"})
    stale_data, stale_kid, _ = rt.sealer.seal(stale)
    assert stale_kid == "user/dave#2"
    logged = Logged(10**6, 0, b"", late, kid, chash)
    verdict = decide(rt.state, logged)
    assert verdict.status == "rejected" and verdict.code == "key_erased"
    assert b.accepted
