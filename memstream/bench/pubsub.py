"""``pubsub``: what subscriptions cost ingest, how fast a delivery arrives, how fast a
subscription catches up.

Three measurements, each against a baseline of the same run:

1. **Ingest with active subscriptions** (:func:`ingest`). Stores opened with the search
   indexes on (``semantic=True``: the semantic subscriptions need the vectors) ingest the
   same planned events (:mod:`memstream.bench.pubsub_data`: creates, revisions and
   archives of corpus texts, batches of 100, durability ``os``) through
   ``MemoryStore.event`` and ``MemoryStore.append``. The *subscribed* arm first sets 1,000
   subscriptions of mixed filters (exact namespaces, ``team/*`` patterns, tags any/all,
   types, actors, states, and 100 semantic ones querying the labelled questions) and
   attaches a consumer to each; two drain threads keep them drained while the events go
   in, as an application serving many subscriptions from threads does: each watches its
   half of the subscribers through one :class:`~memstream.ReadySet`
   (``Subscriber.watch``), waits there for the ones that may have something
   (``ReadySet.wait``), takes every ready delivery of each (``Subscriber.next(timeout=0)``
   up to the heartbeat that says none is left) and acknowledges them in one call per
   subscriber; when :data:`PAUSE` seconds pass with none marked, it sweeps its whole half
   the same way (what a heartbeat interval does: it is also how the drain sees that every
   subscriber has looked at the last event). The *baseline* arm is the
   same store with no subscription. Both stores embed nothing: the texts' vectors come from
   the bench's cache (:class:`~memstream.bench.pubsub_data.CorpusEmbedder`), so the model's
   minutes of CPU weigh on neither, while the vector and keyword indexes do their work as in
   use. Rounds alternate which arm goes first. Reported per arm: the append rate
   (acknowledged events/s, the ``ingest`` suite's measure; the headline), the sustained
   rate (until everything is indexed and, subscribed, every subscription is drained up to
   the last event), and CPU per event by thread (the appending thread, the core projector,
   each processor lane, the drain threads). Every subscription must have received exactly
   the events its filter selects, worked out from the plan without the code under
   measurement, or the suite fails.

2. **Delivery latency** (:mod:`memstream.bench.pubsub_latency`): from an append's
   acknowledgement to the delivery's receipt over SSE, against a ``memstream serve``
   process.

3. **Catch-up** (:func:`catchup`): a store of :data:`BASE_CATCHUP_EVENTS` workload events
   (``--events``; semantic off) is read from the beginning by a subscription matching
   everything and one matching about a tenth (a tag), each consumed with
   ``Subscriber.next`` and ``ack_upto`` every :data:`ACK_EVERY`; baseline, in the same run:
   ``MemoryStore.follow(0)`` over the same log (the decided events, read without any
   subscription machinery). Rounds rotate the order. Every delivery count is checked
   against the store (the tag's count from DuckDB). ``stages`` splits the catch-up's cost
   per event into its steps (read from the log, filter, the delivery's checks and shape,
   acknowledgement), timed one after another on one thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memstream import ReadySet
from memstream.errors import SubscriptionClosed
from memstream.projections.models import LazyEmbedder
from memstream.schemas.views import Heartbeat
from memstream.sdk import MemoryStore

from . import pubsub_data as pd
from . import search as sb
from .common import (
    BenchError,
    Reporter,
    Scratch,
    Stopwatch,
    clean_heap,
    median,
    rate,
    scaled,
    spread,
    thread_cpu_seconds,
)
from .search_data import default_cache_dir, embedded_corpus
from .workload import Workload, write_log

# -- ingest --------------------------------------------------------------------------------------
BASE_INGEST_EVENTS = 20_000
MIN_INGEST_EVENTS = 500
BASE_SUBSCRIPTIONS = 1_000
MIN_SUBSCRIPTIONS = 16
BATCH = 100
DURABILITY = "os"
DRAIN_THREADS = 2
#: seconds a drain thread waits for a subscriber to be marked ready before it sweeps them all
PAUSE = 0.05
#: seconds the subscribers get to attach (read up to the head) before the events go in
ATTACH_TIMEOUT = 120.0
#: seconds the drains get, after the last append, to deliver everything
DRAIN_TIMEOUT = 600.0
GOAL_INGEST_RATIO = 0.85

# -- catch-up -----------------------------------------------------------------------------------
BASE_CATCHUP_EVENTS = 1_000_000
MIN_CATCHUP_EVENTS = 2_000
ACK_EVERY = 1_000
#: the tag of the subscription that matches about a tenth of the workload
TENTH_TAG = "travel"
STAGE_EVENTS = 100_000
GOAL_CATCHUP_EVENTS_PER_S = 50_000


def _now() -> datetime:
    return datetime.now(UTC)


# == 1. ingest with active subscriptions ==========================================================


@dataclass
class IngestData:
    """What both arms ingest: the plan, its texts and every vector they need."""

    plan: pd.Plan
    texts: list[str]
    questions: list[str]
    vectors: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    filters: list[pd.PlannedFilter]
    model: Any
    embedded_now: int


def ingest_data(
    n: int, subscriptions: int, seed: int, cache_dir: Path, reporter: Reporter
) -> IngestData:
    model = LazyEmbedder()
    n_questions = min(sb.BASE_QUESTIONS, 220)
    got = embedded_corpus("pubsub", n, seed, n_questions, model, cache_dir, reporter)
    plan = pd.plan_events(n, len(got.corpus.texts), seed)
    filters = pd.plan_filters(subscriptions, plan, len(got.questions), seed)
    return IngestData(
        plan, got.corpus.texts, got.questions, got.vectors, got.queries, filters, model,
        got.embedded_now,
    )  # fmt: skip


class Drain:
    """Threads that keep subscribers drained (see the module docstring), recording every
    position each subscriber received."""

    def __init__(self, subs: Sequence[Any], threads: int = DRAIN_THREADS, pause: float = PAUSE):
        self.subs = list(subs)
        self.pause = pause
        self.received: dict[str, list[int]] = {s.name: [] for s in self.subs}
        self.redelivered = 0
        self.sweeps = 0
        self.empty_sweeps = 0
        #: subscribers taken from because their ready set marked them
        self.woken = 0
        #: polls that found nothing (answered a heartbeat), per thread
        self._empty_polls = [0] * threads
        self.target = -1
        self._stop = threading.Event()
        self._go = threading.Event()
        self._drained = threading.Event()
        self._done_at: list[float] = []
        self._shares = [self.subs[i::threads] for i in range(threads)]
        self._caught: list[bool] = [False] * threads
        self._lock = threading.Lock()
        self.native_ids: list[int] = []
        self.error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"bench-drain-{i}", daemon=True)
            for i in range(threads)
        ]

    @property
    def empty_polls(self) -> int:
        return sum(self._empty_polls)

    def start(self) -> None:
        for t in self._threads:
            t.start()
        self._go.set()

    def sweep_all(self) -> int:
        """One sweep of every subscriber from the calling thread (before :meth:`start`):
        what it delivered."""
        return sum(self._sweep(sub)[0] for sub in self.subs)

    def _sweep(self, sub: Any) -> tuple[int, int]:
        """Take everything ready for ``sub`` and acknowledge it: (deliveries, the position
        its heartbeat reported)."""
        got = self.received[sub.name]
        positions = []
        while True:
            d = sub.next(timeout=0)
            if isinstance(d, Heartbeat):
                break
            if d.attempt > 1:
                self.redelivered += 1
            positions.append(d.position)
        if positions:
            got.extend(positions)
            sub.ack(*positions)
        return len(positions), d.position

    def _run(self, i: int) -> None:
        self.native_ids.append(threading.get_native_id())
        mine = self._shares[i]
        ready = ReadySet()
        for sub in mine:
            sub.watch(ready)
        self._go.wait()
        try:
            while not self._stop.is_set():
                marked = ready.wait(self.pause)
                target = self.target
                if marked:  # only those that may have something
                    for sub in marked:
                        n, _ = self._sweep(sub)
                        if not n:
                            self._empty_polls[i] += 1
                    with self._lock:
                        self.woken += len(marked)
                        self._caught[i] = False
                    continue
                # none marked for a pause: sweep them all (as a heartbeat interval would)
                delivered, behind = 0, False
                for sub in mine:
                    n, seen = self._sweep(sub)
                    if not n:
                        self._empty_polls[i] += 1
                    delivered += n
                    behind = behind or n > 0 or seen < target
                with self._lock:
                    self.sweeps += 1
                    if not delivered:
                        self.empty_sweeps += 1
                    self._caught[i] = target >= 0 and target == self.target and not behind
                    if self.target >= 0 and all(self._caught) and not self._drained.is_set():
                        self._done_at.append(time.perf_counter())
                        self._drained.set()
        except SubscriptionClosed:
            pass
        except BaseException as e:  # reported by wait()
            self.error = e
            self._drained.set()

    def wait(self, target: int, timeout: float) -> float:
        """Block until every subscriber has been swept empty at or past offset ``target``;
        the ``perf_counter`` time that happened."""
        with self._lock:
            self._caught = [False] * len(self._caught)
            self.target = target
        if not self._drained.wait(timeout):
            raise BenchError(f"pubsub: the subscriptions were not drained within {timeout:.0f} s")
        if self.error is not None:
            raise BenchError(f"pubsub: a drain thread failed: {self.error!r}") from self.error
        return self._done_at[-1]

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join()


def _attach(subs: Sequence[Any], reporter: Reporter) -> float:
    """Sweep every subscriber until each consumer is live (fed by the hub): seconds."""
    start = time.perf_counter()
    deadline = start + ATTACH_TIMEOUT
    pending = list(subs)
    while pending:
        for sub in pending:
            sub.next(timeout=0)
        pending = [s for s in pending if not s.consumer.live]
        if pending and time.perf_counter() > deadline:
            raise BenchError(
                f"pubsub: {len(pending)} subscribers did not attach within {ATTACH_TIMEOUT:.0f} s"
            )
    return time.perf_counter() - start


def _cpu_by_thread(
    before: dict[int, float] | None,
    after: dict[int, float] | None,
    process: float,
    groups: dict[str, list[int]],
    events: int,
) -> dict[str, float | None]:
    """µs of CPU per event of the whole process, of each named group of threads (by native
    id), and of the rest."""
    us = 1e6 / events
    out: dict[str, float | None] = {"process": process * us}
    if before is None or after is None:
        return {**out, **{k: None for k in groups}, "other_threads": None}
    used = {tid: t - before.get(tid, 0.0) for tid, t in after.items()}
    counted = 0.0
    known: set[int] = set()
    for name, ids in groups.items():
        s = sum(used.get(i, 0.0) for i in ids)
        counted += s
        known.update(ids)
        out[name] = s * us
    out["other_threads"] = max(0.0, process - counted) * us
    # the rest by the name the kernel knows them by (native libraries' threads)
    rest: dict[str, float] = {}
    for tid, s in used.items():
        if tid not in known and s > 0:
            comm = _comm(tid)
            rest[comm] = rest.get(comm, 0.0) + s
    for comm, s in sorted(rest.items(), key=lambda kv: -kv[1]):
        out[f"other:{comm}"] = s * us
    out["other:ended"] = max(0.0, process - counted - sum(rest.values())) * us
    return out


def _comm(tid: int) -> str:
    try:
        return Path(f"/proc/self/task/{tid}/comm").read_text().strip()
    except OSError:
        return "ended"


def _thread_groups(store: MemoryStore, drain: Drain | None) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {"append_thread": [threading.get_native_id()]}
    proj = store.runtime.projector_native_id
    groups["projector"] = [proj] if proj is not None else []
    for t in threading.enumerate():
        if t.name.startswith("memstream-") and t.native_id is not None and t.native_id != proj:
            groups.setdefault(f"lane:{t.name.removeprefix('memstream-')}", []).append(t.native_id)
    if drain is not None:
        groups["drain_threads"] = list(drain.native_ids)
    return groups


def _subscription_filter(pf: pd.PlannedFilter, questions: Sequence[str]) -> dict[str, Any]:
    if pf.question is None:
        return pf.filter
    semantic = {**pf.filter["semantic"], "query": questions[pf.question]}
    return {**pf.filter, "semantic": semantic}


def _ingest_run(
    scratch: Scratch,
    reporter: Reporter,
    data: IngestData,
    subscribed: bool,
    label: str,
    with_stages: bool = False,
) -> dict[str, Any]:
    events = data.plan.events
    embedder = pd.CorpusEmbedder(
        data.model,
        [*data.texts, *data.questions],
        np.concatenate([data.vectors, data.queries]),
    )
    path = scratch.new(f"ingest-{'subscribed' if subscribed else 'baseline'}")
    store = MemoryStore.open(
        path, actor="bench", durability=DURABILITY, semantic=True, embedder=embedder
    )
    drain: Drain | None = None
    setup: dict[str, Any] = {}
    try:
        if subscribed:
            with Stopwatch() as setting:
                for pf in data.filters:
                    store.create_subscription(
                        pf.name, filter=_subscription_filter(pf, data.questions)
                    )
            subs = [store.subscribe(pf.name, heartbeat=1.0) for pf in data.filters]
            store.flush()
            setup = {
                "set_seconds": setting.seconds,
                "set_per_subscription_ms": setting.seconds / len(data.filters) * 1e3,
                "attach_seconds": _attach(subs, reporter),
            }
            drain = Drain(subs)
            drain.start()
        store.flush()
        first = store.head + 1
        now = _now()
        args = [pd.event_args(e, data.texts) for e in events]
        actors = [e.actor for e in events]
        batches = [range(i, min(i + BATCH, len(events))) for i in range(0, len(events), BATCH)]
        outcomes = []
        groups = _thread_groups(store, drain)
        with reporter.task(f"pubsub ingest: {label}", len(events)) as advance, clean_heap():
            threads0, process0 = thread_cpu_seconds(), time.process_time()
            t0 = time.perf_counter()
            for b in batches:
                built = [store.event(*args[i], actor=actors[i], occurred_at=now) for i in b]
                outcomes.extend(store.append(built))
                advance(len(b))
            t_append = time.perf_counter() - t0
            store.flush()
            t_flush = time.perf_counter() - t0
            last = outcomes[-1].offset
            t_drained = (drain.wait(last, DRAIN_TIMEOUT) - t0) if drain is not None else t_flush
            threads1, process1 = thread_cpu_seconds(), time.process_time()
        if drain is not None:
            drain.stop()
        cpu = _cpu_by_thread(threads0, threads1, process1 - process0, groups, len(events))
        rejected = [o for o in outcomes if not o.accepted]
        if len(outcomes) != len(events) or rejected:
            raise BenchError(f"pubsub ingest: {len(rejected)} of {len(events)} events rejected")
        offsets = [o.offset for o in outcomes]
        if offsets != list(range(first, first + len(events))):
            raise BenchError("pubsub ingest: the events did not land at consecutive offsets")
        deliveries = None
        stages = None
        if drain is not None:
            deliveries = _check_deliveries(data, drain, offsets)
            if with_stages:
                stages = _match_stages(store, first - 1, subs)
        if embedder.misses:
            raise BenchError(f"pubsub ingest: the model embedded {embedder.misses} texts")
        indexed = len(store.semantic.vectors) if store.semantic is not None else 0
        # archived memories leave the vector index
        live = sum(1 for e in events if e.type == "create") - data.plan.counts.get("archive", 0)
        if indexed != live:
            raise BenchError(f"pubsub ingest: {indexed} vectors indexed, {live} live memories")
    finally:
        if drain is not None:
            drain.stop()
        store.close()
        scratch.remove(path)
    n = len(events)
    return {
        "arm": "subscribed" if subscribed else "baseline",
        "append_seconds": t_append,
        "events_per_s": rate(n, t_append),
        "flush_seconds": t_flush,
        "drained_seconds": t_drained,
        "sustained_events_per_s": rate(n, t_drained),
        "cpu_us_per_event": cpu,
        **setup,
        **({"stages_us": stages} if stages is not None else {}),
        **(
            {
                "deliveries": deliveries,
                "drain": {
                    "sweeps": drain.sweeps,
                    "empty_sweeps": drain.empty_sweeps,
                    "woken": drain.woken,
                    "empty_polls": drain.empty_polls,
                    "pause_s": drain.pause,
                    "threads": len(drain.native_ids),
                },
            }
            if drain is not None and deliveries is not None
            else {}
        ),
    }


def _match_stages(store: MemoryStore, after: int, subs: Sequence[Any]) -> dict[str, float]:
    """After a subscribed run, on this thread, one after another: its events matched again
    by each lane's matcher, in the live batches' size (µs per event; the lanes are idle by
    then, and each is held by its lock while it is timed); the delivery step of the service
    (the checks, the Delivery's shape, the access log record; µs per delivery); and a poll
    of a drained subscriber (``next(timeout=0)`` answering a heartbeat; µs), what a drain
    sweep costs per subscriber with nothing for it."""
    from memstream.pubsub.consumer import Item

    hub = store.hub
    assert hub is not None
    feed = store.runtime.feed
    batches = []
    while True:
        b = feed.read(after, BATCH)
        if not b:
            break
        batches.append(b)
        after = b[-1][0].offset
    events = sum(len(b) for b in batches)
    out: dict[str, float] = {}
    with clean_heap():
        for lane in hub.lanes:
            with lane.lock, Stopwatch() as sw:
                for b in batches:
                    lane.matcher.match(b)
            out[f"match:{lane.name}"] = sw.seconds / events * 1e6
        sample = [d for b in batches for d in b][:5_000]
        with Stopwatch() as sw:
            for d in sample:
                subs[0]._deliver(Item(d[0].offset, d, 1))
        out["deliver_per_delivery"] = sw.seconds / len(sample) * 1e6
        polls = 0
        with Stopwatch() as sw:
            for _ in range(max(1, 5_000 // len(subs))):
                for sub in subs:
                    if not isinstance(sub.next(timeout=0), Heartbeat):
                        raise BenchError("pubsub ingest: a drained subscriber delivered")
                    polls += 1
        out["empty_poll"] = sw.seconds / polls * 1e6
    return out


def _check_deliveries(data: IngestData, drain: Drain, offsets: list[int]) -> dict[str, Any]:
    """Each subscription received exactly what its filter selects (from the plan), once."""
    want, unsure = pd.expected_matches(data.filters, data.plan, offsets, data.vectors, data.queries)
    wrong = []
    total = 0
    by_kind: dict[str, int] = {}
    for pf in data.filters:
        got = drain.received[pf.name]
        total += len(got)
        by_kind[pf.kind] = by_kind.get(pf.kind, 0) + len(got)
        seen = set(got)
        if len(seen) != len(got):
            wrong.append(f"{pf.name}: {len(got) - len(seen)} duplicates")
        edge = unsure[pf.name]
        missing = want[pf.name] - seen - edge
        extra = seen - want[pf.name] - edge
        if missing or extra:
            wrong.append(
                f"{pf.name} {pf.filter}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                f"{len(extra)} extra (e.g. {sorted(extra)[:3]})"
            )
    if wrong:
        raise BenchError(
            f"pubsub ingest: {len(wrong)} subscriptions did not receive what their filter "
            f"selects: {wrong[:5]}"
        )
    matching = sum(1 for pf in data.filters if drain.received[pf.name])
    return {
        "total": total,
        "per_event": total / len(offsets),
        "by_kind": by_kind,
        "subscriptions_with_deliveries": matching,
        "redelivered": drain.redelivered,
    }


def ingest(scratch: Scratch, reporter: Reporter, data: IngestData, repeats: int) -> dict[str, Any]:
    """Baseline and subscribed arms, ``repeats`` rounds, alternating which goes first."""
    n, count = len(data.plan.events), len(data.filters)
    rounds = []
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        pair = {}
        for subscribed in order:
            label = f"round {r + 1}, " + ("subscribed" if subscribed else "baseline")
            run = _ingest_run(scratch, reporter, data, subscribed, label, subscribed and r == 0)
            pair[run["arm"]] = run
        sub, base = pair["subscribed"], pair["baseline"]
        rounds.append(
            {
                "order": ["subscribed" if s else "baseline" for s in order],
                "ratio": sub["events_per_s"] / base["events_per_s"],
                "sustained_ratio": sub["sustained_events_per_s"] / base["sustained_events_per_s"],
                "subscribed": sub,
                "baseline": base,
            }
        )

    def arm(key: str, which: str) -> dict[str, float]:
        return spread([r[which][key] for r in rounds])

    def cpu(which: str) -> dict[str, float | None]:
        keys = {k for r in rounds for k in r[which]["cpu_us_per_event"]}
        out: dict[str, float | None] = {}
        for k in sorted(keys):
            vals = [r[which]["cpu_us_per_event"].get(k) for r in rounds]
            out[k] = (
                median([v for v in vals if v is not None])
                if all(v is not None for v in vals)
                else None
            )
        return out

    ratio = spread([r["ratio"] for r in rounds])
    sustained = spread([r["sustained_ratio"] for r in rounds])
    kinds = dict(pd.mix(count))
    first = rounds[0]["subscribed"]
    return {
        "parameters": {
            "events": n,
            "event_types": data.plan.counts,
            "subscriptions": count,
            "filters": kinds,
            "semantic_threshold": pd.SEMANTIC_THRESHOLD,
            "batch_size": BATCH,
            "durability": DURABILITY,
            "drain_threads": DRAIN_THREADS,
            "drain_pause_s": PAUSE,
            "semantic_indexes": True,
            "texts_embedded_into_cache": data.embedded_now,
            "repeats": repeats,
        },
        "goal": {"ratio": GOAL_INGEST_RATIO},
        "results": {
            "subscribed_events_per_s": arm("events_per_s", "subscribed"),
            "baseline_events_per_s": arm("events_per_s", "baseline"),
            "ratio": ratio,
            "subscribed_sustained_events_per_s": arm("sustained_events_per_s", "subscribed"),
            "baseline_sustained_events_per_s": arm("sustained_events_per_s", "baseline"),
            "sustained_ratio": sustained,
            "deliveries_per_event": first["deliveries"]["per_event"],
            "drain_cpu_us_per_delivery": spread(
                [
                    r["subscribed"]["cpu_us_per_event"]["drain_threads"]
                    / r["subscribed"]["deliveries"]["per_event"]
                    for r in rounds
                    if r["subscribed"]["cpu_us_per_event"]["drain_threads"] is not None
                ]
                or [0.0]
            ),
            "empty_polls_per_event": spread(
                [r["subscribed"]["drain"]["empty_polls"] / n for r in rounds]
            ),
            "stages_us": first["stages_us"],
            "deliveries": first["deliveries"],
            "set_per_subscription_ms": arm("set_per_subscription_ms", "subscribed"),
            "attach_seconds": arm("attach_seconds", "subscribed"),
            "cpu_us_per_event": {"subscribed": cpu("subscribed"), "baseline": cpu("baseline")},
            "meets_ratio": ratio["median"] >= GOAL_INGEST_RATIO,
            "meets_sustained_ratio": sustained["median"] >= GOAL_INGEST_RATIO,
            "rounds": rounds,
        },
    }


# == 3. catch-up ================================================================================


def _follow(store: MemoryStore, head: int) -> dict[str, Any]:
    with clean_heap(), Stopwatch() as sw:
        n = 0
        for batch in store.follow(0):
            n += len(batch)
            if batch[-1][0].offset >= head:
                break
    if n != head + 1:
        raise BenchError(f"pubsub catch-up: follow(0) read {n} events, the log holds {head + 1}")
    return {"seconds": sw.seconds, "events": n, "events_per_s": rate(n, sw.seconds)}


def _consume(store: MemoryStore, name: str, flt: dict[str, Any], expected: int) -> dict[str, Any]:
    store.create_subscription(name, filter=flt, start="beginning")
    head = store.head
    sub = store.subscribe(name, heartbeat=1.0)
    n, last, acks = 0, -1, 0
    try:
        with clean_heap(), Stopwatch() as sw:
            while True:
                d = sub.next(timeout=0)
                if isinstance(d, Heartbeat):
                    if d.position >= head and d.in_flight == 0:
                        break
                    if d.in_flight:
                        sub.ack_upto(last)
                        acks += 1
                    continue
                if d.position <= last:
                    raise BenchError(f"pubsub catch-up: {name} delivered {d.position} after {last}")
                n += 1
                last = d.position
                if n % ACK_EVERY == 0:
                    sub.ack_upto(last)
                    acks += 1
        cursor = store.get_subscription(name).cursor
    finally:
        sub.close()
        store.delete_subscription(name)
    if n != expected:
        raise BenchError(
            f"pubsub catch-up: {name} delivered {n} events, the store holds {expected}"
        )
    if cursor is None or cursor < last:
        raise BenchError(f"pubsub catch-up: {name}'s cursor {cursor} is behind its last {last}")
    return {
        "seconds": sw.seconds,
        "deliveries": n,
        "deliveries_per_s": rate(n, sw.seconds),
        "scanned": head + 1,
        "scanned_per_s": rate(head + 1, sw.seconds),
        "ack_calls": acks,
    }


def _stages(store: MemoryStore, events: int) -> dict[str, float]:
    """µs per event of the steps of a catch-up delivery, one after another on one thread:
    the log read (the feed, from storage, in the consumer's batches), the filter (the
    subscription's own selector, for a filter that matches everything), the delivery (the
    service's checks, the Delivery's shape, the access log record). What the consumer adds
    (its queue, the in-flight bookkeeping, the acknowledgements, the subscriber's loop) is
    the rest of the measured time per delivery (:func:`catchup`)."""
    from memstream.pubsub.consumer import SCAN_BATCH, Item

    store.create_subscription("stages", filter={}, start="beginning")
    sub = store.subscribe("stages", heartbeat=1.0)
    feed = store.runtime.feed
    select = sub.consumer.select
    deliver = sub._deliver
    sw = {k: Stopwatch() for k in ("read", "filter", "deliver")}
    done, after = 0, -1
    try:
        with clean_heap():
            while done < events:
                with sw["read"]:
                    batch = feed.read(after, SCAN_BATCH)
                if not batch:
                    break
                after = batch[-1][0].offset
                with sw["filter"]:
                    chosen = select(batch)
                with sw["deliver"]:
                    for d in chosen:
                        deliver(Item(d[0].offset, d, 1))
                done += len(batch)
    finally:
        sub.close()
        store.delete_subscription("stages")
        store.flush()  # the deletion reaches every processor before the store closes
    return {k: v.seconds / max(1, done) * 1e6 for k, v in sw.items()} | {"events": done}


def catchup(
    scratch: Scratch,
    reporter: Reporter,
    scale: float,
    repeats: int,
    seed: int,
    events: int | None = None,
) -> dict[str, Any]:
    n = events if events is not None else scaled(BASE_CATCHUP_EVENTS, scale, MIN_CATCHUP_EVENTS)
    path = scratch.new("catchup")
    with reporter.task("pubsub catch-up: write the log", n) as advance:
        written = write_log(path, Workload(seed=seed), n, batch=5_000, advance=advance)
    with clean_heap(), Stopwatch() as opening:
        store = MemoryStore.open(
            path, actor="bench", durability="os", semantic=False,
            progress=reporter.factory("pubsub catch-up: open"),
        )  # fmt: skip
        store.flush()
    rounds = []
    try:
        (tenth,) = store.runtime.duck.query(
            "SELECT count(*) AS n FROM versions WHERE list_contains(tags, ?)", [TENTH_TAG]
        )
        expected_tenth = int(tenth["n"])
        kinds: dict[str, Callable[[int], dict[str, Any]]] = {
            "follow": lambda r: _follow(store, store.head),
            "all": lambda r: _consume(store, f"all-{r}", {}, n),
            "tenth": lambda r: _consume(
                store, f"tenth-{r}", {"tags_any": [TENTH_TAG]}, expected_tenth
            ),
        }
        names = list(kinds)
        with reporter.task("pubsub catch-up: rounds", repeats * len(names)) as tick:
            for r in range(repeats):
                order = names[r % len(names) :] + names[: r % len(names)]
                got = {}
                for k in order:
                    got[k] = kinds[k](r)
                    tick(1)
                rounds.append({"order": order, **got})
        stages = _stages(store, min(n, STAGE_EVENTS))
    finally:
        store.close()
        scratch.remove(path)
    follow = spread([r["follow"]["events_per_s"] for r in rounds])
    every = spread([r["all"]["deliveries_per_s"] for r in rounds])
    tenth_s = spread([r["tenth"]["scanned_per_s"] for r in rounds])
    ratio = spread([r["all"]["deliveries_per_s"] / r["follow"]["events_per_s"] for r in rounds])
    measured = stages["read"] + stages["filter"] + stages["deliver"]
    stages["rest"] = max(0.0, 1e6 / every["median"] - measured)
    tenth_ratio = spread(
        [r["tenth"]["scanned_per_s"] / r["follow"]["events_per_s"] for r in rounds]
    )
    return {
        "parameters": {
            "events": n,
            "creates": written.creates,
            "revises": written.revises,
            "log_write_seconds": written.seconds,
            "open_seconds": opening.seconds,
            "ack_every": ACK_EVERY,
            "tenth_filter": {"tags_any": [TENTH_TAG]},
            "tenth_matches": expected_tenth,
            "semantic_indexes": False,
            "repeats": repeats,
        },
        "goal": {"events_per_s": GOAL_CATCHUP_EVENTS_PER_S},
        "results": {
            "all_deliveries_per_s": every,
            "tenth_scanned_per_s": tenth_s,
            "tenth_deliveries_per_s": spread([r["tenth"]["deliveries_per_s"] for r in rounds]),
            "follow_events_per_s": follow,
            "ratio_all_to_follow": ratio,
            "ratio_tenth_to_follow": tenth_ratio,
            "stages_us_per_event": stages,
            "meets_goal": every["median"] >= GOAL_CATCHUP_EVENTS_PER_S,
            "meets_goal_tenth": tenth_s["median"] >= GOAL_CATCHUP_EVENTS_PER_S,
            "rounds": rounds,
        },
    }


# == the suite ==================================================================================


def run(
    scratch: Scratch,
    reporter: Reporter,
    scale: float,
    repeats: int,
    seed: int,
    *,
    cache_dir: Path | None = None,
    events: int | None = None,
) -> dict[str, Any]:
    """The three measurements (see the module docstring). ``events``: the catch-up log's
    size (default :data:`BASE_CATCHUP_EVENTS` times ``scale``)."""
    from . import pubsub_latency

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    n = scaled(BASE_INGEST_EVENTS, scale, MIN_INGEST_EVENTS)
    count = scaled(BASE_SUBSCRIPTIONS, scale, MIN_SUBSCRIPTIONS)
    data = ingest_data(n, count, seed, cache_dir, reporter)
    parts = {
        "ingest": ingest(scratch, reporter, data, repeats),
        "latency": pubsub_latency.run(
            scratch, reporter, scale, repeats, data.texts, data.questions[0], cache_dir
        ),
        "catchup": catchup(scratch, reporter, scale, repeats, seed, events),
    }
    return {
        "parameters": {"repeats": repeats, **{k: v["parameters"] for k, v in parts.items()}},
        "goals": {k: v["goal"] for k, v in parts.items()},
        "results": {k: v["results"] for k, v in parts.items()},
    }


__all__ = ["Drain", "catchup", "ingest", "run"]
