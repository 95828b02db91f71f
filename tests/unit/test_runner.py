"""The followable feed of decided events and the processor runner, on real stores.

A processor is registered once (``EmbeddedRuntime(processors=...)``) and gets every
decided event after its checkpoint, live or read back from storage; readers follow the
feed from any offset, blocking or async, woken by commits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from memstream.projections.decided import read_outcomes
from memstream.projections.processor import Decided, Processor, ProcessorContext
from memstream.streams.embedded import EmbeddedRuntime, NotCaughtUp
from memstream.streams.runner import ProcessorFailed

from memstream import MemoryStore


class Recorder:
    """A processor that remembers what it saw, with a checkpoint kept in a file (its
    'effects' and checkpoint are one write, as a real processor's must be)."""

    def __init__(self, path: Path, name: str = "recorder", fail_at: int | None = None):
        self.name = name
        self.path = path
        self.fail_at = fail_at
        self.seen: list[Decided] = []
        self.ticks = 0
        self.closed = False

    def start(self, ctx: ProcessorContext) -> int:
        return int(self.path.read_text()) if self.path.exists() else -1

    def process(self, batch: Sequence[Decided]) -> None:
        for logged, _ in batch:
            if logged.offset == self.fail_at:
                raise RuntimeError(f"cannot process offset {logged.offset}")
        self.seen.extend(batch)
        self.path.write_text(str(batch[-1][0].offset))

    def tick(self) -> None:
        self.ticks += 1

    def close(self) -> None:
        self.closed = True


def open_store(root: Path, *processors: Processor, **options) -> MemoryStore:
    rt = EmbeddedRuntime(root, processors=list(processors), options=_options(**options))
    return MemoryStore(rt, actor="tester")


def _options(**kw):
    from memstream.streams.embedded import Options

    return Options(durability="os", **kw)


def workload(store: MemoryStore) -> list:
    """A mix of accepted and rejected events; the outcomes the writer got."""
    outs = []
    a = store.create("user/a", "tea", tags=["x"], metadata={"k": 1})
    b = store.create("user/a", "job", tags=["y"])
    outs += [a, b, store.revise(a.memory_id, "jasmine tea", tags=["z"])]
    outs += [store.archive(b.memory_id), store.restore(b.memory_id)]
    m = store.merge("user/a", [a.memory_id, b.memory_id], "tea and job")
    outs += [m, store.freeze(m.memory_id)]
    outs += store.append([store.event("revise", "user/a", m.memory_id, {"text": "no"})])
    c = store.create("user/b", "bob")
    outs += [c, store.revise(c.memory_id, "bob 2"), store.rollback(c.memory_id, 1)]
    outs += [store.erase(c.memory_id)]
    return outs


def _comparable(out):
    # an erase's destroyed key generation is the decider's business only (not stored)
    return msgspec.structs.replace(out, destroy_key=None)


def test_stored_outcomes_equal_the_live_ones(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        live = workload(store)
        store.flush()
        stored = read_outcomes(store.runtime.duck, -1, store.head)
    assert [o.status for o in live].count("rejected") == 1
    assert [_comparable(o) for o in live] == stored


def test_stored_outcomes_read_in_ranges_equal_the_whole(tmp_path: Path) -> None:
    """Read in two ranges at every split, the outcomes are those of one read: an event
    whose memory's version was made before its range (an archive, a freeze, an erase)
    finds that version too."""
    with open_store(tmp_path / "s") as store:
        live = workload(store)
        store.flush()
        head = store.head
        whole = read_outcomes(store.runtime.duck, -1, head)
        for split in range(head):
            parts = read_outcomes(store.runtime.duck, -1, split)
            parts += read_outcomes(store.runtime.duck, split, head)
            assert parts == whole, split
    assert [_comparable(o) for o in live] == whole
    assert any(m.tags for o in whole if o.type == "archive" for m in o.changes)


def test_a_processor_sees_every_decided_event_once_in_order(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "cp")
    with open_store(tmp_path / "s", rec) as store:
        live = workload(store)
        store.flush()
        assert rec.ticks >= 0
    assert rec.closed
    assert [lg.offset for lg, _ in rec.seen] == list(range(len(live)))
    assert [_comparable(o) for _, o in rec.seen] == [_comparable(o) for o in live]
    # the events come opened (payload readable) except the erased memory's
    texts = [getattr(lg.event.payload, "text", None) for lg, _ in rec.seen]
    assert texts[0] == "tea"


def test_a_processor_resumes_from_its_checkpoint_reading_storage(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with open_store(root) as store:  # written with no processor registered
        live = workload(store)
    rec = Recorder(tmp_path / "cp")
    (tmp_path / "cp").write_text("4")  # it had processed offsets 0..4 before
    with open_store(root, rec) as store:
        store.runtime.wait_for_processors(store.head)
        more = store.create("user/c", "late")
        store.flush()
    assert [lg.offset for lg, _ in rec.seen] == list(range(5, len(live) + 1))
    # read back from storage, then live: the same outcomes either way
    assert [_comparable(o) for _, o in rec.seen[:-1]] == [_comparable(o) for o in live[5:]]
    assert rec.seen[-1][1].memory_id == more.memory_id


def test_a_new_processor_catches_up_from_offset_zero(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with open_store(root) as store:
        live = workload(store)
    rec = Recorder(tmp_path / "cp")
    with open_store(root, rec) as store:
        store.flush()
    assert len(rec.seen) == len(live)


def test_a_failing_processor_is_reported_and_resumes_after_reopening(tmp_path: Path) -> None:
    root = tmp_path / "s"
    rec = Recorder(tmp_path / "cp", fail_at=3)
    with open_store(root, rec) as store:
        workload(store)
        with pytest.raises(ProcessorFailed, match="recorder processor stopped.*offset 3"):
            store.flush()
        # the core and the other reads go on
        still = store.create("user/a", "still")
        assert store.get(still.memory_id, min_offset=still.offset) is not None
    before = [lg.offset for lg, _ in rec.seen]  # the batches before the failing one
    assert before == list(range(len(before))) and len(before) <= 3
    ok = Recorder(tmp_path / "cp")
    with open_store(root, ok) as store:
        store.flush()
        head = store.head
    done = {lg.offset for lg, _ in rec.seen} | {lg.offset for lg, _ in ok.seen}
    assert done == set(range(head + 1))
    assert {lg.offset for lg, _ in rec.seen} & {lg.offset for lg, _ in ok.seen} == set()


def test_a_wait_for_named_processors_ignores_the_others(tmp_path: Path) -> None:
    class Stuck(Recorder):
        def process(self, batch: Sequence[Decided]) -> None:
            raise RuntimeError("stuck")

    fast = Recorder(tmp_path / "fast", name="fast")
    with open_store(tmp_path / "s", fast, Stuck(tmp_path / "stuck", name="stuck")) as store:
        out = store.create("user/a", "x")
        store.runtime.wait_for_processors(out.offset, timeout=10, names=["fast"])
        with pytest.raises(ProcessorFailed, match="stuck processor stopped"):
            store.runtime.wait_for_processors(out.offset, timeout=10)


def test_processor_names_are_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        open_store(tmp_path / "s", Recorder(tmp_path / "a"), Recorder(tmp_path / "b"))


def test_a_search_read_waits_for_the_processors(tmp_path: Path) -> None:
    class Slow(Recorder):
        def process(self, batch: Sequence[Decided]) -> None:
            time.sleep(0.5)
            super().process(batch)

    with open_store(tmp_path / "s", Slow(tmp_path / "cp"), read_wait=0.1) as store:
        out = store.create("user/a", "x")
        with pytest.raises(NotCaughtUp):
            store.runtime.wait_for_processors(out.offset, timeout=0.05)
        store.runtime.wait_for_processors(out.offset, timeout=10)


def test_follow_reads_history_then_live_and_wakes_on_append(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        live = workload(store)
        store.flush()
        feed = store.runtime.feed
        got: list[Decided] = []
        done = threading.Event()

        def reader() -> None:
            for batch in feed.follow(2, batch=3):
                got.extend(batch)
                if got[-1][0].offset >= len(live):
                    done.set()
                    return

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.2)  # the reader is at the end, waiting
        assert [lg.offset for lg, _ in got] == list(range(2, len(live)))
        late = store.create("user/z", "late")
        assert done.wait(5), "the reader was not woken by the append"
        t.join()
    assert got[-1][0].offset == late.offset
    assert got[-1][1] == late


def test_an_idle_reader_costs_no_cpu(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.create("user/a", "x")
        store.flush()
        feed = store.runtime.feed
        t0 = time.thread_time()
        start = time.monotonic()
        assert list(feed.follow(store.head + 1, idle=0.5)) == []
        assert time.monotonic() - start >= 0.5
        assert time.thread_time() - t0 < 0.05  # blocked, not polling


def test_follow_async_is_woken_by_appends(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        first = store.create("user/a", "x")
        feed = store.runtime.feed

        async def follow() -> list[Decided]:
            got: list[Decided] = []
            async for batch in feed.follow_async(0):
                got.extend(batch)
                if len(got) == 2:
                    return got
            return got

        async def main() -> list[Decided]:
            task = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            await asyncio.to_thread(store.create, "user/a", "y")
            return await asyncio.wait_for(task, 5)

        got = asyncio.run(main())
    assert got[0][1].memory_id == first.memory_id and got[1][0].offset == 1


def test_the_sdk_follows_the_log_through_the_service(tmp_path: Path) -> None:
    from memstream import AsyncMemoryStore

    with open_store(tmp_path / "s") as store:
        live = workload(store)
        got = [_comparable(o) for batch in store.follow(3, idle=0.2) for _, o in batch]
        assert got == [_comparable(o) for o in live[3:]]

        async def follow_async() -> list:
            a = AsyncMemoryStore(store)
            return [_comparable(o) async for batch in a.follow(0, idle=0.2) for _, o in batch]

        assert asyncio.run(follow_async()) == [_comparable(o) for o in live]
        with pytest.raises(ValueError, match="start must be an offset"):
            store.follow(-1)


def test_follow_ends_when_the_store_closes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    store.create("user/a", "x")
    ended = threading.Event()

    def reader() -> None:
        for _ in store.runtime.feed.follow(0):
            pass
        ended.set()

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    store.close()
    assert ended.wait(5)
    t.join()


def test_old_offsets_come_from_storage_when_memory_no_longer_holds_them(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.runtime.feed._limit = 4  # keep only a few events in memory
        live = [store.create("user/a", f"m{i}") for i in range(30)]
        store.flush()
        got = [d for batch in store.runtime.feed.follow(0, idle=0.1) for d in batch]
    assert [o for _, o in got] == [_comparable(o) for o in live]


class Flushing(Recorder):
    """A recorder that notes what it had seen each time it was asked to flush."""

    def __init__(self, path: Path):
        super().__init__(path, name="flushing")
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(self.seen[-1][0].offset if self.seen else -1)


def test_a_checkpoint_flushes_every_processor_after_it_caught_up(tmp_path: Path) -> None:
    slow = Flushing(tmp_path / "ckpt")
    plain = Recorder(tmp_path / "plain")  # no flush method: nothing to call
    with open_store(tmp_path / "store", slow, plain, follow_interval=30.0) as store:
        outs = workload(store)
        assert store.checkpoint()["offset"] == outs[-1].offset
        # it reached the head before it flushed
        assert slow.flushed_at == [outs[-1].offset]
        store.checkpoint()
        assert slow.flushed_at == [outs[-1].offset] * 2


class Early(Recorder):
    """A recorder that follows decisions, not commits."""

    follows_decisions = True


def _until(what, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.005)
    return bool(what())


def test_a_processor_that_follows_decisions_sees_events_before_the_commit(
    tmp_path: Path, hold_projection
):
    early = Early(tmp_path / "early.ckpt", name="early")
    late = Recorder(tmp_path / "late.ckpt", name="late")
    store = open_store(tmp_path / "s", early, late)
    try:
        before = store.create("user/a", "first").offset
        store.flush()
        held = hold_projection(store)
        feed = store.runtime.feed
        offsets = [store.create("user/a", f"note {i}").offset for i in range(3)]
        assert _until(lambda: [lg.offset for lg, _ in early.seen][-3:] == offsets)
        assert feed.decided == offsets[-1] and feed.committed == before
        assert [lg.offset for lg, _ in late.seen] == [before]  # committed readers wait
        assert feed.read(before) == [] and not feed.wait(before, 0.05)
        assert [lg.offset for lg, _ in feed.read(before, decided=True)] == offsets
        held.release()
        assert _until(lambda: [lg.offset for lg, _ in late.seen][-3:] == offsets)
        assert feed.committed == offsets[-1]
    finally:
        store.close()


def test_an_erase_decided_but_not_committed_is_read_from_storage_after_its_commit(
    tmp_path: Path, hold_projection
):
    """What memory held of an erased memory may carry its plaintext: once an erase is
    decided, readers of decisions wait for its commit and read it back from storage, where
    the destroyed key makes every earlier event of the memory a tombstone."""
    store = open_store(tmp_path / "s")
    try:
        kept = store.create("user/a", "kept")
        store.flush()
        held = hold_projection(store)
        feed = store.runtime.feed
        gone = store.create("user/a", "secret diagnosis")
        assert [lg.offset for lg, _ in feed.read(kept.offset, decided=True)] == [gone.offset]
        erased = store.erase(gone.memory_id)
        assert feed.decided == erased.offset
        assert feed.read(kept.offset, decided=True) == []  # memory no longer serves it
        assert not feed.wait(kept.offset, 0.05, decided=True)
        held.release()
        assert _until(lambda: feed.committed == erased.offset)
        got = feed.read(kept.offset, decided=True)
        assert [lg.offset for lg, _ in got] == [gone.offset, erased.offset]
        assert got[0][0].event.payload is None  # a tombstone: its key is destroyed
    finally:
        store.close()
