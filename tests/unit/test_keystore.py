"""The key store: a batch's new subjects get their keys in one durable commit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Context, Create, Event, default_registry
from memstream.streams.keystore import KeyStore
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
