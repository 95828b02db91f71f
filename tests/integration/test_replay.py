"""Replay: the log rebuilds every projection, identically, to any past point; backups
taken under write load restore to the same state."""

from __future__ import annotations

import random
import threading
import time
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
        workload(live, rng, 300)  # history moves on: revisions, merges, archives...
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
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(3)
        try:
            while not stop.is_set():
                workload(src, rng, 20)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    workload(src, random.Random(2), 100)
    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.3)
        src.backup(tmp_path / "backup")
        time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert not errors
    with MemoryStore.open(tmp_path / "backup") as restored:
        head = restored.head
        assert 100 <= head < src.head
        assert restored.verify() is None
        with src.replay(tmp_path / "src-at-backup", to=head) as reference:
            assert snapshot(restored) == snapshot(reference)
        # A restored backup is a full store: it takes writes again.
        assert restored.create("user/alice", "after restore").accepted
    src.close()
