"""Replay: the log rebuilds every projection, identically, to any past point; backups
taken under write load restore to the same state."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from memstream import MemoryStore
from memstream.errors import StoreReadOnly


def views(store: MemoryStore, ids: list[str]) -> dict:
    """What a user reads: get, history and audit for some memories."""
    store.flush()
    out = {}
    for mid in ids:
        out[mid] = (
            store.get(mid),
            store.history(mid),
            store.audit(memory_id=mid, limit=1000).entries,
        )
    out["*audit"] = store.audit(limit=10_000).entries
    return out


@contextmanager
def writes_meanwhile(store: MemoryStore, workload, seed: int) -> Iterator[None]:
    """Appends batches to ``store`` on a thread until the block ends; its errors fail it."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():  # no erasure: it would reach the copies made meanwhile
                workload(store, rng, 20, erases=False)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
    assert not errors


def test_replaying_twice_gives_identical_projections(tmp_path, snapshot, workload):
    with MemoryStore.open(tmp_path / "live", durability="os") as live:
        workload(live, random.Random(11), 600)
        want = snapshot(live)
        assert want["audit"] and any(r["status"] == "rejected" for r in want["audit"])
        with live.replay(tmp_path / "a") as a, live.replay(tmp_path / "b") as b:
            assert snapshot(a) == want
            assert snapshot(b) == want
            with pytest.raises(StoreReadOnly):
                a.create("user/alice", "a replay takes no writes")


def test_replay_to_a_past_point_answers_as_the_store_stood(tmp_path, workload):
    rng = random.Random(5)
    with MemoryStore.open(tmp_path / "live", durability="os") as live:
        workload(live, rng, 300)
        live.flush()
        cut = live.head
        ids = sorted(rng.sample(sorted(live.runtime.state.memories), 15))
        then = views(live, ids)
        time.sleep(0.01)
        moment = datetime.now(UTC)
        time.sleep(0.01)
        # history moves on: revisions, merges, archives... (no erasure: it would take the
        # erased content out of the past too, which is what erasure is for)
        workload(live, rng, 300, erases=False)
        live.flush()
        assert views(live, ids) != then

        with live.replay(tmp_path / "at-offset", to=cut) as past:
            assert past.head == cut
            assert views(past, ids) == then
        with live.replay(tmp_path / "at-time", to=moment) as past:
            assert views(past, ids) == then
        # Point-in-time reads on the live store agree with the replay.
        for mid in ids:
            assert live.get(mid, as_of=cut) == then[mid][0]
            assert live.get(mid, as_of=moment) == then[mid][0]
            assert live.history(mid, as_of=cut) == then[mid][1]


def test_backup_under_write_load_restores_to_the_same_state(tmp_path, snapshot, workload):
    src = MemoryStore.open(tmp_path / "src", durability="os")
    workload(src, random.Random(2), 100)
    with writes_meanwhile(src, workload, seed=3):
        time.sleep(0.3)
        src.backup(tmp_path / "backup")
        time.sleep(0.2)
    with MemoryStore.open(tmp_path / "backup") as restored:
        head = restored.head
        assert 100 <= head < src.head
        assert restored.verify() is None
        with src.replay(tmp_path / "src-at-backup", to=head) as reference:
            assert snapshot(restored) == snapshot(reference)
        # A restored backup is a full store: it takes writes again.
        assert restored.create("user/alice", "after restore").accepted
    src.close()


def test_a_replay_under_write_load_holds_the_log_as_it_started(tmp_path, snapshot, workload):
    # The replay projects the source's log while its copy is written; appends keep coming
    # meanwhile, and neither the copy nor the projection may take any of them.
    src = MemoryStore.open(tmp_path / "src", durability="os")
    workload(src, random.Random(4), 200)
    with writes_meanwhile(src, workload, seed=6):
        time.sleep(0.2)
        replica = src.replay(tmp_path / "replica")
        time.sleep(0.2)
    with replica:
        head = replica.head
        assert 200 <= head < src.head
        assert replica.runtime.projected_offset == head
        assert replica.verify() is None
        with src.replay(tmp_path / "reference", to=head) as reference:
            assert snapshot(replica) == snapshot(reference)
    src.close()


def test_a_failed_copy_fails_the_replay_and_leaves_the_source_working(
    tmp_path, monkeypatch, workload
):
    from memstream.streams.log import EmbeddedLog

    with MemoryStore.open(tmp_path / "live", durability="os") as live:
        workload(live, random.Random(8), 100)

        def full_disk(self, dest, stop=None):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(EmbeddedLog, "backup", full_disk)
        with pytest.raises(OSError, match="No space left"):
            live.replay(tmp_path / "replica")
        monkeypatch.undo()
        # No half-made replica is left, and the source goes on.
        assert list((tmp_path / "replica").iterdir()) == []
        assert live.create("user/alice", "still writable").accepted
        with live.replay(tmp_path / "second") as replica:
            assert replica.head == live.head


def test_a_copy_that_differs_from_what_was_projected_is_refused(tmp_path, monkeypatch, workload):
    import sqlite3

    from memstream.streams.log import EmbeddedLog

    real = EmbeddedLog.backup

    def tampered(self, dest, stop=None):
        n = real(self, dest, stop)
        db = sqlite3.connect(dest)
        db.execute('UPDATE records SET hash = zeroblob(32) WHERE "offset" = ?', (n - 1,))
        db.commit()
        db.close()
        return n

    with MemoryStore.open(tmp_path / "live", durability="os") as live:
        workload(live, random.Random(9), 50)
        monkeypatch.setattr(EmbeddedLog, "backup", tampered)
        with pytest.raises(RuntimeError, match="differs from its source"):
            live.replay(tmp_path / "replica")
        assert list((tmp_path / "replica").iterdir()) == []
