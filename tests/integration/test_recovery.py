"""Durability and recovery with real processes and real files.

- a child appending is SIGKILLed at a random moment: every acknowledged event is in the
  log byte for byte, no partial record exists, and the projection catches up to exactly
  what an uninterrupted run (a replay of the same log) holds;
- the projector failing mid-batch loses nothing and ends in the same state;
- a duplicate delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from memstream.projections import duck as duckmod
from memstream.projections.decide import DecisionState, decide
from memstream.schemas.memcube import Logged

from memstream import MemoryStore

CHILD = textwrap.dedent(
    """
    import hashlib, json, os, random, sys
    from memstream import MemoryStore
    path, ack_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = MemoryStore.open(path, actor="child", durability="fsync", batch_size=64)
    ack = open(ack_path, "a")
    print("ready", flush=True)
    i = 0
    while True:
        n = rng.randint(1, 50)
        evs = [store.event("create", "user/crash", f"c{seed}-{i + k}",
                           {"text": f"seed {seed} event {i + k} " + "x" * rng.randint(0, 2000)})
               for k in range(n)]
        outs = store.append(evs)
        for ev, o in zip(evs, outs):
            data = next(store.runtime.log.read(o.offset, o.offset + 1))[0].data
            ack.write(json.dumps([o.offset, ev.event_id, ev.payload.text,
                                  hashlib.sha256(data).hexdigest()]) + "\\n")
        ack.flush()
        os.fsync(ack.fileno())
        i += n
    """
)


def run_and_kill(path, ack, seed: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(ack), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    time.sleep(random.Random(seed).uniform(0.3, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_loses_no_acknowledged_event(tmp_path, snapshot):
    path, ack = tmp_path / "store", tmp_path / "acks.jsonl"
    for seed in (1, 2, 3):
        run_and_kill(path, ack, seed)
    acked = [json.loads(line) for line in ack.read_text().splitlines() if line.strip()]
    assert len(acked) > 50, "the child should have acknowledged events before the kill"
    with MemoryStore.open(path, durability="fsync") as s:
        log = s.runtime.log
        records = {r.offset: r for b in log.read(0) for r in b}
        # Dense offsets, an intact chain: no partial or torn record.
        assert sorted(records) == list(range(log.next_offset))
        assert s.verify() is None
        for offset, event_id, text, digest in acked:
            r = records[offset]
            assert hashlib.sha256(r.data).hexdigest() == digest
            ev, _ = s.runtime.sealer.open(r.data)
            assert ev.event_id == event_id and ev.payload.text == text
        # Every record is projected after reopening, and equals a fresh rebuild.
        s.flush()
        assert s.runtime.projected_offset == log.next_offset - 1
        live = snapshot(s)
        with s.replay(tmp_path / "rebuilt") as rebuilt:
            assert snapshot(rebuilt) == live
        ids = {e[1] for e in acked}
        audited: set[str] = set()
        after = None
        while True:  # every page: a fast log acknowledges more than one page's worth
            page = s.audit(namespace="user/crash", after=after, limit=5_000)
            audited.update(e.event_id for e in page.entries)
            if page.next_after is None:
                break
            after = page.next_after
        assert ids <= audited


def test_projector_failure_mid_batch_resumes_to_the_same_state(
    tmp_path, monkeypatch, snapshot, workload
):
    rng = random.Random(7)
    reference = tmp_path / "reference"
    with MemoryStore.open(reference, durability="os") as ref:
        workload(ref, rng, 400)
        ref_log_bytes = [r.data for b in ref.runtime.log.read(0) for r in b]

    # Feed the same records to a store whose projector dies in the middle of a batch.
    broken = tmp_path / "broken"
    os.makedirs(broken)
    for name in ("log.sqlite", "keys.sqlite"):
        (broken / name).write_bytes((reference / name).read_bytes())
    real = duckmod.DuckStore._write
    calls = {"n": 0}

    def dying(self, cur, b):
        calls["n"] += 1
        real(self, cur, b)  # every statement of the batch runs...
        if calls["n"] == 3:
            raise RuntimeError("power cut before commit")  # ...but the commit never happens

    monkeypatch.setattr(duckmod.DuckStore, "_write", dying)
    with pytest.raises(RuntimeError, match="power cut"):
        MemoryStore.open(broken, batch_size=50)
    monkeypatch.setattr(duckmod.DuckStore, "_write", real)
    with MemoryStore.open(broken, batch_size=50) as resumed, MemoryStore.open(reference) as ref:
        assert [r.data for b in resumed.runtime.log.read(0) for r in b] == ref_log_bytes
        assert snapshot(resumed) == snapshot(ref)


@pytest.mark.parametrize("batch_size", [7, 10_000])
def test_a_catch_up_in_other_batches_ends_in_the_live_store_s_state(
    tmp_path, snapshot, workload, batch_size: int
):
    # Live, the projector writes each append's batch; a catch-up cuts the log its own way
    # (batches of 7, or all of it in one), so a memory's creation and its later changes
    # fall into other transactions: inserted in one and updated in another, or created and
    # changed within one.
    from memstream.streams.embedded import DUCKDB_ROW_GROUP, catch_up_batch

    assert catch_up_batch(10_000_000, 10_000) == DUCKDB_ROW_GROUP  # a long replay
    assert catch_up_batch(100_000, 10_000) == 10_000
    live = tmp_path / "live"
    with MemoryStore.open(live, durability="os") as ref:
        workload(ref, random.Random(11), 400)
        expected = snapshot(ref)
    copy = tmp_path / "copy"
    os.makedirs(copy)
    for name in ("log.sqlite", "keys.sqlite"):
        (copy / name).write_bytes((live / name).read_bytes())
    with MemoryStore.open(copy, batch_size=batch_size) as caught_up:
        assert snapshot(caught_up) == expected


def test_duplicate_delivery_changes_nothing(store: MemoryStore, snapshot):
    mid = store.create("user/alice", "one").memory_id
    store.revise(mid, "two")
    store.flush()
    before = snapshot(store)
    rt = store.runtime
    pairs = []
    for batch in rt.log.read(0):
        for r in batch:
            ev, stored = rt.sealer.open(r.data)
            pairs.append(
                Logged(r.offset, r.recorded_at, r.chain_hash, ev,
                       stored.sealed.kid if stored.sealed else None, stored.content_hash)
            )  # fmt: skip
    fresh = DecisionState()
    decided = []
    for logged in pairs:
        o = decide(fresh, logged)
        fresh.commit(logged, o)
        decided.append((logged, o))
    rt.apply(decided)  # delivered again: every offset is already held
    rt.apply(decided[-1:])
    assert snapshot(store) == before


def test_a_retried_event_is_appended_once(store: MemoryStore, snapshot):
    ev = store.event("create", "user/alice", "retry-me", {"text": "once"})
    first = store.append([ev])[0]
    again = store.append([ev])[0]
    assert again.duplicate and again.offset == first.offset and again.status == "accepted"
    assert store.head == first.offset
    assert len(store.audit(memory_id="retry-me").entries) == 1
