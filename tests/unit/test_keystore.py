"""The key store: a batch's new subjects get their keys in one durable commit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Context, Create, Event, default_registry
from memstream.streams.keystore import KeyDestroyed, KeyStore
from memstream.streams.sealing import Sealer


def _commits(ks: KeyStore) -> list[str]:
    seen: list[str] = []
    ks._db.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("COMMIT") else None)
    return seen


def test_new_subjects_get_their_keys_in_one_commit(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "keys.sqlite")
    ks.current("user/old")
    commits = _commits(ks)
    subjects = [f"user/u{i}" for i in range(50)] + ["user/old"]
    ks.ensure(subjects)
    assert len(commits) == 1
    held = {s: ks.current(s) for s in subjects}
    ks.ensure(subjects)  # every one is live now: nothing to write
    assert len(commits) == 1
    ks.close()
    # durable, and the same keys after reopening
    again = KeyStore(tmp_path / "keys.sqlite", create_keys=False)
    assert {s: again.current(s) for s in subjects} == held
    again.close()


def test_an_erased_subject_gets_its_next_generation(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "keys.sqlite")
    assert ks.current("user/a")[0] == "user/a#1"
    ks.destroy("user/a")
    ks.ensure(s for s in ("user/a", "user/b"))  # any iterable, read once
    assert (ks.generation("user/a"), ks.generation("user/b")) == (2, 1)
    assert ks.current("user/a")[0] == "user/a#2"
    assert ks.current("user/b")[0] == "user/b#1"
    ks.close()


def test_a_store_that_takes_keys_from_elsewhere_makes_none(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "keys.sqlite", create_keys=False)
    with pytest.raises(KeyError, match="no live key for subject 'user/a'"):
        ks.ensure(["user/a"])
    assert ks.generation("user/a") == 0
    ks.close()


def test_sealing_a_batch_creates_its_missing_keys_together(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "keys.sqlite")
    sealer = Sealer(ks, EventCodec(default_registry()))
    commits = _commits(ks)
    events = [
        Event(
            event_id=f"01a204d8-ab18-77f4-8e51-38ae95b9{i:04d}",
            type="create",
            schema_version=1,
            namespace=f"user/u{i % 7}",
            memory_id=f"m{i}",
            occurred_at=datetime.now(UTC),
            actor="test",
            context=Context(),
            payload=Create(text=f"memory {i}"),
        )
        for i in range(30)
    ]
    sealed = sealer.seal_all(events)
    assert len(commits) == 1
    # each memory its own data key, wrapped by its subject's key
    assert [kid for _, kid, _ in sealed] == [f"user/u{i % 7}#1/m{i}#1" for i in range(30)]
    for e, (data, _, _) in zip(events, sealed, strict=True):
        opened, _ = sealer.open(data)
        assert opened.payload == e.payload
    ks.close()


def _selects(ks: KeyStore) -> list[str]:
    seen: list[str] = []
    ks._db.set_trace_callback(lambda sql: seen.append(sql) if "FROM data_keys" in sql else None)
    return seen


def _events(n: int) -> list[Event]:
    return [
        Event(
            event_id=f"01a204d8-ab18-77f4-8e51-38ae95b9{i:04d}",
            type="create",
            schema_version=1,
            namespace=f"user/u{i % 3}",
            memory_id=f"m{i}",
            occurred_at=datetime.now(UTC),
            actor="test",
            context=Context(),
            payload=Create(text=f"memory {i}", tags=["t"]),
        )
        for i in range(n)
    ]


def test_preloading_a_slice_reads_its_keys_together_and_keeps_tombstones(tmp_path: Path) -> None:
    """Opening a slice of records after :meth:`Sealer.preload` gives exactly what opening
    them one by one gives (tombstones for an erased memory and an erased subject), with the
    live data keys read in one query instead of one each."""
    path = tmp_path / "keys.sqlite"
    ks = KeyStore(path)
    events = _events(30)
    records = [data for data, _, _ in Sealer(ks, EventCodec(default_registry())).seal_all(events)]
    ks.destroy_memory("user/u1", "m4")
    ks.destroy("user/u2")  # every memory of the subject: m2, m5, m8, ...
    ks.close()
    erased = {"m4"} | {f"m{i}" for i in range(2, 30, 3)}

    def opened(preload: bool) -> tuple[list[Event], list[str]]:
        cold = KeyStore(path, create_keys=False)  # nothing cached
        sealer = Sealer(cold, EventCodec(default_registry()))
        selects = _selects(cold)
        if preload:
            sealer.preload(records)
        out = [sealer.open(r)[0] for r in records]
        cold.close()
        return out, selects

    one_by_one, single = opened(preload=False)
    batched, selects = opened(preload=True)
    assert batched == one_by_one
    assert {e.memory_id for e in batched if e.payload is None} == erased
    assert [e.payload for e in batched if e.memory_id not in erased] == [
        e.payload for e in events if e.memory_id not in erased
    ]
    # one by one: a query per record; preloaded: one for the slice, then one per record
    # whose key is gone (answered as before: a tombstone)
    assert len(single) == 30
    assert len(selects) == 1 + len(erased)
    assert "IN (" in selects[0]


def test_prefetch_leaves_a_destroyed_key_destroyed(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "keys.sqlite")
    Sealer(ks, EventCodec(default_registry())).seal_all(_events(3))
    [gone] = ks.destroy_memory("user/u1", "m1")
    live = ks.data_kids("user/u0", "m0")[0]
    ks._data.clear()
    assert ks.prefetch([gone, live, "user/u2#1", "not a key"]) == 1
    assert live in ks._data and gone not in ks._data
    with pytest.raises(KeyDestroyed):
        ks.get(gone)
    ks.close()
