"""Crypto-shredding: erasing a memory destroys that memory's content and no other; erasing a
subject destroys everything sealed for it. Plaintext disappears from every projection and
can no longer be read from the log; the audit keeps who, when, why and what was erased."""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from memstream.projections.decide import decide
from memstream.schemas.memcube import Logged
from memstream.schemas.record import Sealed, StoredEvent
from memstream.streams.keystore import KeyDestroyed, KeyStore
from memstream.streams.log import EmbeddedLog

from memstream import MemoryStore
from memstream.errors import MemoryErased, MemoryFrozen, SealedBySubject, UnknownSubject


def _opened(store: MemoryStore) -> dict[str, list]:
    """memory id → the payloads of its log records, opened now (``None``: a tombstone)."""
    got: dict[str, list] = {}
    for batch in store.runtime.log.read(0, store.runtime.log.next_offset):
        for r in batch:
            ev, _ = store.runtime.sealer.open(r.data)
            got.setdefault(ev.memory_id, []).append(ev.payload)
    return got


def test_erasing_one_memory_leaves_the_other_memories_of_its_subject(
    store: MemoryStore, snapshot, tmp_path
):
    tea = store.create("user/alice", "Alice drinks green tea", tags=["drink"], source="chat")
    store.revise(tea.memory_id, "Alice drinks jasmine tea", reason="Alice corrected it")
    wrong = store.create("user/alice", "Alice is allergic to cats", tags=["health"])
    job = store.create("user/alice", "Alice works at ACME", metadata={"team": "billing"})
    out = store.erase(wrong.memory_id, reason="recorded by mistake")
    assert out.accepted and out.state == "erased"
    # its neighbours, same subject, are whole: state, text, tags, every version
    t = store.get(tea.memory_id, min_offset=out.offset)
    assert (t.state, t.text, t.tags, t.source) == (
        "active",
        "Alice drinks jasmine tea",
        ["drink"],
        "chat",
    )
    assert [v.text for v in store.history(tea.memory_id)] == [
        "Alice drinks green tea",
        "Alice drinks jasmine tea",
    ]
    j = store.get(job.memory_id)
    assert (j.text, j.metadata) == ("Alice works at ACME", {"team": "billing"})
    assert out.erased == (wrong.memory_id,)

    # the erased memory: content, tags and metadata gone from every projection
    m = store.get(wrong.memory_id, min_offset=out.offset)
    assert m.state == "erased" and m.text is None and m.tags == [] and m.source is None
    assert all(v.text is None and v.content_hash is None for v in store.history(wrong.memory_id))

    # in the log: the erased memory's records are tombstones, the others still open
    opened = _opened(store)
    assert opened[wrong.memory_id][0] is None
    assert all(p is not None for p in opened[tea.memory_id] + opened[job.memory_id])
    assert (
        store.runtime.duck.query(
            "SELECT count(*) AS n FROM versions WHERE memory_id = ? AND text IS NOT NULL",
            [wrong.memory_id],
        )[0]["n"]
        == 0
    )

    # the audit says what was erased, and how
    entries = {e.type: e for e in store.audit(memory_id=wrong.memory_id).entries}
    assert entries["erase"].scope == "memory" and entries["erase"].erased == [wrong.memory_id]
    assert entries["erase"].why == "recorded by mistake"
    assert entries["create"].tombstone and entries["create"].scope is None
    revise = next(e for e in store.audit(memory_id=tea.memory_id).entries if e.type == "revise")
    assert revise.why == "Alice corrected it" and not revise.tombstone

    # the subject's key lives on: new memories of Alice are sealed as before
    later = store.create("user/alice", "Alice likes jazz")
    assert store.get(later.memory_id, min_offset=later.offset).text == "Alice likes jazz"
    with pytest.raises(MemoryErased):
        store.revise(wrong.memory_id, "resurrect")
    with store.replay(tmp_path / "replay") as replica:
        assert snapshot(replica) == snapshot(store)


def test_erase_subject_erases_every_memory_of_the_subject_and_no_other(
    store: MemoryStore, snapshot, tmp_path
):
    a = store.create("user/alice", "Alice's diagnosis is confidential", subject="person/alice")
    store.revise(a.memory_id, "Alice's diagnosis, revised", reason="doctor's note about Alice")
    b = store.create("user/alice", "Alice's address", subject="person/alice")
    other = store.create("user/alice", "team lunch is on Friday")
    bob = store.create("user/bob", "Bob likes jazz")
    out = store.erase_subject("person/alice", namespace="user/alice", reason="GDPR art. 17 #42")
    assert out.accepted and out.state == "erased"
    assert sorted(out.erased) == sorted([a.memory_id, b.memory_id])
    assert out.memory_id == out.event_id  # names no memory

    for mid in (a.memory_id, b.memory_id):
        m = store.get(mid, min_offset=out.offset)
        assert m.state == "erased" and m.text is None and m.tags == []
        assert all(v.text is None and v.content_hash is None for v in store.history(mid))
    assert store.get(other.memory_id).text == "team lunch is on Friday"
    assert store.get(bob.memory_id).text == "Bob likes jazz"

    # every key of the subject is gone from the key store, with the data keys it wrapped
    keys = sqlite3.connect(store.path / "keys.sqlite")
    rows = keys.execute("SELECT kid, key FROM keys WHERE subject = 'person/alice'").fetchall()
    assert rows and all(key is None for _, key in rows)
    data = keys.execute(
        "SELECT kid, wrapped FROM data_keys WHERE subject = 'person/alice'"
    ).fetchall()
    assert len(data) == 2 and all(w is None for _, w in data)
    opened = _opened(store)
    assert all(p is None for mid in (a.memory_id, b.memory_id) for p in opened[mid])
    assert all(p is not None for p in opened[other.memory_id] + opened[bob.memory_id])

    # who, when, why and what stay; the reasons written under the keys do not
    erase = store.audit(type="erase").entries[0]
    assert erase.scope == "subject" and sorted(erase.erased) == sorted(out.erased)
    assert erase.why == "GDPR art. 17 #42" and erase.actor == "tester"
    entries = {e.type: e for e in store.audit(memory_id=a.memory_id).entries}
    assert entries["revise"].why is None

    with pytest.raises(MemoryErased):
        store.revise(b.memory_id, "resurrect")
    with pytest.raises(UnknownSubject, match="person/nobody"):
        store.erase_subject("person/nobody", namespace="user/alice")
    with store.replay(tmp_path / "replay") as replica:
        assert snapshot(replica) == snapshot(store)


def test_the_subject_gets_a_new_key_after_erasure(store: MemoryStore):
    a = store.create("user/bob", "old fact")
    store.erase_subject("user/bob")
    fresh = store.create("user/bob", "new fact")
    assert fresh.accepted
    assert store.get(fresh.memory_id, min_offset=fresh.offset).text == "new fact"
    db = sqlite3.connect(store.path / "keys.sqlite")
    kids = [k for (k,) in db.execute(
        "SELECT kid FROM keys WHERE subject = 'user/bob' ORDER BY generation")]  # fmt: skip
    assert kids == ["user/bob#1", "user/bob#2"]
    data = [k for (k,) in db.execute(
        "SELECT kid FROM data_keys WHERE subject = 'user/bob' ORDER BY generation")]  # fmt: skip
    assert data == [f"user/bob#1/{a.memory_id}#1", f"user/bob#2/{fresh.memory_id}#1"]


def test_a_frozen_memory_blocks_erasure_of_its_subject_not_of_its_neighbours(
    store: MemoryStore,
):
    a = store.create("user/carol", "under legal hold")
    b = store.create("user/carol", "same subject")
    store.freeze(a.memory_id, reason="litigation hold")
    with pytest.raises(MemoryFrozen, match=a.memory_id):
        store.erase_subject("user/carol")
    with pytest.raises(MemoryFrozen, match=a.memory_id):
        store.erase(a.memory_id)
    assert store.get(b.memory_id, min_offset=store.head).text == "same subject"
    assert store.erase(b.memory_id).accepted  # the hold is on a, not on its subject
    assert store.get(a.memory_id, min_offset=store.head).text == "under legal hold"


def test_a_payload_sealed_under_a_destroyed_key_is_rejected(store: MemoryStore):
    rt = store.runtime
    a = store.create("user/dave", "first")
    late = store.event("revise", "user/dave", a.memory_id, {"text": "sealed before the erase"})
    data, kid, chash = rt.sealer.seal(late)  # sealed under generation 1
    store.erase_subject("user/dave")
    b = store.create("user/dave", "second life")  # generation 2
    stale = store.event("create", "user/dave", "dave-late", {"text": "late"})
    stale_data, stale_kid, _ = rt.sealer.seal(stale)
    assert stale_kid == "user/dave#2/dave-late#1"
    logged = Logged(10**6, 0, b"", late, kid, chash)
    verdict = decide(rt.state, logged)
    assert verdict.status == "rejected" and verdict.code == "key_erased"
    assert b.accepted


def test_equal_texts_of_two_memories_hash_apart(store: MemoryStore):
    """Content hashes are keyed per memory: an erased memory's text cannot be confirmed by
    hashing a guess, not even through a neighbour holding the same text."""
    a = store.create("user/erin", "the same words")
    b = store.create("user/erin", "the same words")
    ha = store.get(a.memory_id, min_offset=b.offset).content_hash
    hb = store.get(b.memory_id).content_hash
    assert ha and hb and ha != hb


# -- the key store ----------------------------------------------------------------------------


def test_data_keys_are_stored_wrapped_and_die_with_their_memory_or_subject(tmp_path: Path):
    ks = KeyStore(tmp_path / "keys.sqlite")
    k1, dek1 = ks.current_data_key("user/a", "m1")
    k2, dek2 = ks.current_data_key("user/a", "m2")
    k3, dek3 = ks.current_data_key("user/b", "m1")
    assert (k1, k2, k3) == ("user/a#1/m1#1", "user/a#1/m2#1", "user/b#1/m1#1")
    assert len({dek1, dek2, dek3}) == 3
    ks.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert raw and not any(d in raw for d in (dek1, dek2, dek3))  # only wrapped bytes

    ks = KeyStore(tmp_path / "keys.sqlite")
    assert ks.get(k1) == dek1 and ks.get(k2) == dek2
    assert ks.destroy_memory("user/a", "m1") == [k1]
    with pytest.raises(KeyDestroyed):
        ks.get(k1)
    assert ks.get(k2) == dek2 and ks.get(k3) == dek3  # the neighbours live on
    assert ks.current_data_key("user/a", "m1")[0] == "user/a#1/m1#2"  # a fresh one if asked

    destroyed = ks.destroy("user/a")
    assert "user/a#1" in destroyed and k2 in destroyed
    for kid in (k2, "user/a#1/m1#2"):
        with pytest.raises(KeyDestroyed):
            ks.get(kid)
    assert ks.get(k3) == dek3
    rows = sqlite3.connect(tmp_path / "keys.sqlite").execute(
        "SELECT count(*) FROM data_keys WHERE subject = 'user/a' AND wrapped IS NOT NULL"
    )
    assert rows.fetchone()[0] == 0
    assert ks.current_data_key("user/a", "m9")[0] == "user/a#2/m9#1"
    ks.close()


def test_a_data_key_wrapped_by_a_destroyed_subject_key_is_unusable(tmp_path: Path):
    ks = KeyStore(tmp_path / "keys.sqlite")
    kid, _ = ks.current_data_key("user/a", "m1")
    ks.close()
    # the subject key alone overwritten (as a worker that read its destruction first)
    db = sqlite3.connect(tmp_path / "keys.sqlite")
    db.execute("UPDATE keys SET key = NULL WHERE kid = 'user/a#1'")
    db.commit()
    db.close()
    ks = KeyStore(tmp_path / "keys.sqlite")
    with pytest.raises(KeyDestroyed):
        ks.get(kid)
    ks.close()


# -- old logs ---------------------------------------------------------------------------------


def _append_raw(root: Path, stored: StoredEvent) -> None:
    log = EmbeddedLog(root / "log.sqlite", durability="os")
    try:
        log.append(
            [(uuid.UUID(stored.event_id).bytes, stored.namespace, msgspec.json.encode(stored))]
        )
    finally:
        log.close()


def _stored(type_: str, version: int, mid: str, clear: dict, sealed=None) -> StoredEvent:
    return StoredEvent(
        event_id=str(uuid.uuid4()),
        type=type_,
        schema_version=version,
        namespace="user/old",
        memory_id=mid,
        occurred_at=datetime.now(UTC),
        actor="old-version",
        clear=clear,
        sealed=sealed,
    )


def test_an_erase_of_schema_version_1_replays_as_a_subject_erase(store_dir: Path, tmp_path):
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        ids = [s.create("user/old", f"fact {i}").memory_id for i in range(3)]
        other = s.create("user/new", "untouched").memory_id
    # an erase as earlier versions wrote it: no scope, meaning the subject
    _append_raw(store_dir, _stored("erase", 1, ids[0], {"reason": "old erase"}))
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        s.flush()
        assert [s.get(m).state for m in ids] == ["erased"] * 3
        assert s.get(other).text == "untouched"
        erase = s.audit(type="erase").entries[0]
        assert (erase.scope, erase.why, erase.status) == ("subject", "old erase", "accepted")
        assert sorted(erase.erased) == sorted(ids)
        assert s.runtime.state.erased_generation["user/old"] == 1
        with s.replay(tmp_path / "replay") as replica:
            assert [replica.get(m).state for m in ids] == ["erased"] * 3


def test_a_legacy_record_opens_and_only_its_subject_can_erase_it(store_dir: Path, tmp_path):
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        kept = s.create("user/old", "a new-style memory").memory_id
        skid, key = s.runtime.keys.current("user/old")
    # a create as earlier versions sealed it: under the subject's key itself
    event_id = str(uuid.uuid4())
    nonce = os.urandom(12)
    plain = msgspec.json.encode({"text": "an old-style memory"})
    ct = AESGCM(key).encrypt(nonce, plain, f"{event_id}|{skid}".encode())
    old = msgspec.structs.replace(
        _stored("create", 1, "legacy-1", {}, Sealed(kid=skid, nonce=nonce, ct=ct)),
        event_id=event_id,
    )
    _append_raw(store_dir, old)
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        s.flush()
        assert s.get("legacy-1").text == "an old-style memory"
        with pytest.raises(SealedBySubject, match="erase subject user/old") as e:
            s.erase("legacy-1")
        assert e.value.outcome.code == "sealed_by_subject"
        assert s.get("legacy-1", min_offset=s.head).text == "an old-style memory"
        assert s.erase(kept).accepted  # new-style neighbours are erased alone
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        # the legacy mark survives a restart (read back from the projection's audit)
        with pytest.raises(SealedBySubject):
            s.erase("legacy-1")
        out = s.erase_subject("user/old")
        assert out.erased == ("legacy-1",)
        assert s.get("legacy-1", min_offset=out.offset).text is None
        assert _opened(s)["legacy-1"][0] is None


def test_reading_the_log_back_in_slices_after_a_restart_gives_tombstones(store_dir: Path):
    """Read from storage with nothing cached (the keys of a slice fetched together), the
    events of an erased memory and of an erased subject are tombstones, in every slice,
    and every other event opens."""
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        made = [s.create(f"user/u{i % 3}", f"note {i}") for i in range(12)]
        for m in made[::2]:
            s.revise(m.memory_id, "revised")
        s.erase(made[4].memory_id)
        s.erase_subject("user/u2")
        s.flush()
    erased = {made[4].memory_id} | {m.memory_id for i, m in enumerate(made) if i % 3 == 2}
    with MemoryStore.open(store_dir, actor="tester", durability="os") as s:
        s.runtime.sealer.keys._data.clear()  # the keys too come from storage
        s.runtime.sealer._aead.clear()
        got = [lg.event for b in s.follow(0, batch=5, idle=0.1) for lg, _ in b]
    texts = {e.memory_id: e.payload for e in got if e.type in ("create", "revise")}
    assert len(got) == 12 + 6 + 2
    assert {k for k, p in texts.items() if p is None} == erased
    assert all(texts[m.memory_id].text.startswith(("note", "revised")) for m in made
               if m.memory_id not in erased)  # fmt: skip


@pytest.mark.parametrize("scope", ["memory", "subject"])
def test_following_the_log_after_an_erase_gives_tombstones(store: MemoryStore, scope: str):
    """The feed keeps recent decided events in memory; an erase must not leave their
    plaintext there for a reader that follows from before it."""
    o = store.create("user/alice", "Alice's secret diagnosis")
    kept = store.create("user/bob", "Bob's note")
    store.flush()
    assert [d for b in store.follow(0, idle=0.1) for d in b][0][0].event.payload is not None
    if scope == "memory":
        store.erase(o.memory_id)
    else:
        store.erase_subject("user/alice")
    store.flush()
    creates = {
        lg.event.memory_id: lg.event.payload
        for b in store.follow(0, idle=0.1) for lg, _ in b if lg.event.type == "create"
    }  # fmt: skip
    assert creates[o.memory_id] is None
    assert creates[kept.memory_id].text == "Bob's note"
