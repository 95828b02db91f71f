"""Delivery latency over HTTP: from an append's acknowledgement to the delivery's receipt
over server-sent events, against a real ``memstream serve`` process.

Per measurement, a fresh store is served by ``python -m memstream serve`` (a subprocess on
a free loopback port, its default durability, as an operator runs it). This process then
sets a subscription (``PUT /v1/subscriptions/{name}``) and reads its deliveries on one SSE
connection (``GET /v1/subscriptions/{name}/events``, httpx streaming), noting the time each
``delivery`` event is read; a second thread acknowledges what was read, in batches
(``POST .../ack``). A writer appends over HTTP one memory at a time
(``POST /v1/memories``) at a steady pace and notes when each append was sent and when its
answer (the acknowledgement: the event is durable) came back. Latency is the receipt time
minus the acknowledgement time, both from ``time.perf_counter`` of this one process (same
clock, same machine); it can be negative, when the delivery beats the append's own
answer. Also reported: receipt minus the time the append was sent (the whole path).

Two kinds, each in a server of its own, one after the other (never at once, on 2 cores):

- ``plain``: the filter names the writer's namespace (every append matches); the server
  keeps no search indexes (``MEMSTREAM_SEMANTIC=0``), so the subscription alone is
  measured;
- ``semantic``: a semantic filter (a labelled question, threshold :data:`SEMANTIC_THRESHOLD`),
  the server with its search indexes and the embedding model: each text is embedded once,
  by the model, before it can match; appended at a slower pace that the model sustains on
  2 cores.

And, to say where the time goes, the plain measurement in process (no HTTP, no server):
acknowledgement → ``Subscriber.next`` (:func:`_embedded`), beside acknowledgement → the
core projection's commit of the event (DuckDB), which a delivery does not wait for: the
subscription lane follows the writer's decisions.

The first :data:`WARMUP` appends of each server (connections, the model's first use) are
not timed. Every append must be delivered exactly once (the semantic kind: every append
whose text meets the threshold, as the server decides it; all of them must arrive).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from httpx_sse import connect_sse

from memstream.projections.models import LazyEmbedder
from memstream.server import read_server_info

from .common import BenchError, Reporter, Scratch, scaled, spread
from .search_data import VectorCache

NAMESPACE = "bench/latency"
BASE_APPENDS = 2_000
MIN_APPENDS = 40
BASE_SEMANTIC_APPENDS = 500
MIN_SEMANTIC_APPENDS = 20
#: appends per second of the writer
PACE = 200.0
SEMANTIC_PACE = 50.0
WARMUP = 20
#: the semantic filter's threshold: low, so that most texts about anything match
SEMANTIC_THRESHOLD = 0.0
#: how far the server's similarity may be from the one computed here from cached vectors
#: (its query vector comes from the single-text path: about 1e-3 per component)
SIM_TOLERANCE = 0.02
#: seconds between acknowledgement batches of the acker thread
ACK_INTERVAL = 0.02
START_TIMEOUT = 120.0
#: seconds to wait for the last deliveries after the last append
SETTLE_TIMEOUT = 120.0
GOAL_P50_MS = 10.0
GOAL_P99_MS = 100.0


class _Server:
    """``python -m memstream serve`` on a free loopback port for one store directory."""

    def __init__(self, store: Path, semantic: bool):
        self.store = store
        self.semantic = semantic
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token: str | None = None
        self.log = store.parent / f"{store.name}.server.log"

    def start(self) -> _Server:
        env = dict(os.environ)
        env.update(MEMSTREAM_SEMANTIC="1" if self.semantic else "0", PYTHONUNBUFFERED="1")
        self.store.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memstream", "serve", "--store", str(self.store),
                 "--host", "127.0.0.1", "--port", "0", "--json"],
                stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=self.store.parent,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"memstream serve exited {self.proc.returncode}: {self.tail()}")
            info = read_server_info(self.store)
            if info is not None and info.pid == self.proc.pid:
                self.url, self.token = info.url, info.token
                try:
                    if httpx.get(self.url + "/ready", headers=self.headers, timeout=5).is_success:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"memstream serve did not become ready: {self.tail()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2_000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Reader:
    """One SSE connection to a subscription: the receipt time of each delivery, by
    position; a second thread acknowledges them in batches."""

    def __init__(self, server: _Server, name: str):
        self.server = server
        self.name = name
        self.received: dict[int, float] = {}
        self.duplicates = 0
        self.heartbeats = 0
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._client = httpx.Client(base_url=server.url, headers=server.headers, timeout=None)
        self._threads = [
            threading.Thread(target=self._read, name="bench-sse", daemon=True),
            threading.Thread(target=self._ack, name="bench-ack", daemon=True),
        ]
        self._response: httpx.Response | None = None

    def start(self) -> None:
        for t in self._threads:
            t.start()
        if not self._ready.wait(30):
            raise BenchError(f"the SSE stream of {self.name} did not open: {self.error!r}")

    def _read(self) -> None:
        clock = time.perf_counter
        try:
            with connect_sse(
                self._client, "GET", f"/v1/subscriptions/{self.name}/events",
                params={"heartbeat": 1},
            ) as source:  # fmt: skip
                source.response.raise_for_status()
                self._response = source.response
                self._ready.set()
                for sse in source.iter_sse():
                    t = clock()
                    if sse.event == "delivery":
                        position = int(sse.id)
                        if position in self.received:
                            self.duplicates += 1
                        else:
                            self.received[position] = t
                        self._acks.put(position)
                    elif sse.event == "heartbeat":
                        self.heartbeats += 1
                    elif sse.event in ("closed", "error"):
                        if sse.event == "error":
                            self.error = BenchError(f"the stream ended with an error: {sse.data}")
                        return
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            if not self._stop.is_set():
                self.error = e
        finally:
            self._ready.set()

    def _ack(self) -> None:
        while not self._stop.is_set():
            time.sleep(ACK_INTERVAL)
            self._flush()

    def _flush(self) -> None:
        positions = []
        while True:
            try:
                positions.append(self._acks.get_nowait())
            except queue.Empty:
                break
        if positions:
            try:
                self._client.post(
                    f"/v1/subscriptions/{self.name}/ack", json={"positions": positions}
                ).raise_for_status()
            except httpx.HTTPError as e:
                self.error = e

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()
        for t in self._threads:
            t.join(10)
        self._client.close()


def _percentiles(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def _measure(
    server: _Server,
    name: str,
    flt: dict[str, Any],
    texts: Sequence[str],
    pace: float,
    sims: Sequence[float] | None,
) -> dict[str, Any]:
    """Set subscription ``name``, read it over SSE, append ``texts`` at ``pace``/s: the
    latency of each delivery (the first :data:`WARMUP` appends untimed). ``sims``: each
    text's similarity to the semantic filter's query (None: every append matches)."""
    client = httpx.Client(base_url=server.url, headers=server.headers, timeout=60)
    reader = _Reader(server, name)
    try:
        client.put(f"/v1/subscriptions/{name}", json={"filter": flt}).raise_for_status()
        reader.start()
        sent: dict[int, float] = {}
        acked: dict[int, float] = {}
        clock = time.perf_counter
        interval = 1.0 / pace
        late = 0
        t0 = clock()
        for k, text in enumerate(texts):
            due = t0 + k * interval
            wait = due - clock()
            if wait > 0:
                time.sleep(wait)
            else:
                late += 1
            t_sent = clock()
            r = client.post("/v1/memories", json={"namespace": NAMESPACE, "text": text})
            t_ack = clock()
            if r.status_code != 201:
                raise BenchError(f"an append was refused ({r.status_code}): {r.text[:300]}")
            offset = int(r.json()["offset"])
            sent[offset], acked[offset] = t_sent, t_ack
        elapsed = clock() - t0
        order = sorted(sent)
        if sims is None:
            wanted, unsure = set(order), set()
        else:  # the server's vectors may differ from the cached ones by rounding
            wanted = {
                o
                for o, s in zip(order, sims, strict=True)
                if s >= SEMANTIC_THRESHOLD + SIM_TOLERANCE
            }
            unsure = {
                o
                for o, s in zip(order, sims, strict=True)
                if abs(s - SEMANTIC_THRESHOLD) < SIM_TOLERANCE
            }
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline and reader.error is None:
            if wanted <= reader.received.keys() and _settled(client, name, order[-1]):
                break
            time.sleep(0.05)
        if reader.error is not None:
            raise BenchError(f"reading {name} over SSE failed: {reader.error!r}")
    finally:
        reader.stop()
        client.close()
    got = reader.received
    missing = [o for o in wanted if o not in got]
    extra = [o for o in got if o not in wanted and o not in unsure]
    if missing or extra or reader.duplicates:
        raise BenchError(
            f"{name}: {len(missing)} matching appends not delivered, {len(extra)} deliveries "
            f"that do not match, {reader.duplicates} duplicates"
        )
    offsets = sorted(o for o in sent if o in got)
    timed = [o for o in offsets if o >= min(sent) + WARMUP] if len(offsets) > WARMUP else offsets
    if not timed:
        raise BenchError(f"{name}: nothing was delivered to time")
    return {
        "appends": len(sent),
        "delivered": len(offsets),
        "timed": len(timed),
        "pace_per_s": pace,
        "achieved_per_s": len(texts) / elapsed,
        "late_appends": late,
        "append_ms": _percentiles([(acked[o] - sent[o]) * 1e3 for o in sent]),
        "ack_to_receipt": _percentiles([(got[o] - acked[o]) * 1e3 for o in timed]),
        "send_to_receipt": _percentiles([(got[o] - sent[o]) * 1e3 for o in timed]),
        "received_before_ack": sum(1 for o in timed if got[o] < acked[o]),
        "heartbeats": reader.heartbeats,
    }


def _settled(client: httpx.Client, name: str, last: int) -> bool:
    """Whether subscription ``name`` has looked at every event up to ``last`` and has
    nothing in flight (every match delivered and acknowledged)."""
    view = client.get(f"/v1/subscriptions/{name}").json()
    stats = view.get("stats") or {}
    return (
        int(stats.get("scanned", -1)) >= last
        and not stats.get("ready")
        and not stats.get("in_flight")
    )


def _embedded(scratch: Scratch, texts: Sequence[str], pace: float) -> dict[str, Any]:
    """The same plain measurement in process, without HTTP: a store opened here (its
    default durability, no search indexes), a thread taking deliveries with
    ``Subscriber.next``, and a thread noting when the core projection commits each event
    (DuckDB; what the store's tables show): the delivery's latency beside the commit's."""
    from memstream.errors import SubscriptionClosed
    from memstream.schemas.views import Heartbeat
    from memstream.sdk import MemoryStore
    from memstream.streams.feed import FeedClosed

    path = scratch.new("latency-embedded")
    store = MemoryStore.open(path, actor="bench", semantic=False)
    clock = time.perf_counter
    received: dict[int, float] = {}
    committed: dict[int, float] = {}
    stop = threading.Event()
    try:
        store.create_subscription("embedded", namespaces=[NAMESPACE])
        sub = store.subscribe("embedded", heartbeat=1.0)
        feed = store.runtime.feed

        def take() -> None:
            try:
                while not stop.is_set():
                    d = sub.next(timeout=0.2)
                    if not isinstance(d, Heartbeat):
                        received[d.position] = clock()
                        sub.ack(d.position)
            except SubscriptionClosed:
                pass

        def watch() -> None:
            after = feed.committed
            try:
                while not stop.is_set():
                    if feed.wait(after, 0.2):
                        now, upto = clock(), feed.committed
                        for o in range(after + 1, upto + 1):
                            committed[o] = now
                        after = upto
            except FeedClosed:
                pass

        threads = [threading.Thread(target=f, daemon=True) for f in (take, watch)]
        for t in threads:
            t.start()
        acked: dict[int, float] = {}
        t0 = clock()
        for k, text in enumerate(texts):
            wait = t0 + k / pace - clock()
            if wait > 0:
                time.sleep(wait)
            offset = store.create(NAMESPACE, text).offset
            acked[offset] = clock()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not acked.keys() <= received.keys() and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(5)
    finally:
        stop.set()
        store.close()
        scratch.remove(path)
    missing = [o for o in acked if o not in received or o not in committed]
    if missing:
        raise BenchError(f"embedded: {len(missing)} appends not delivered (or not committed)")
    timed = sorted(acked)[WARMUP:] if len(acked) > WARMUP else sorted(acked)
    return {
        "appends": len(acked),
        "timed": len(timed),
        "ack_to_receipt": _percentiles([(received[o] - acked[o]) * 1e3 for o in timed]),
        "ack_to_committed": _percentiles([(committed[o] - acked[o]) * 1e3 for o in timed]),
    }


def run(
    scratch: Scratch,
    reporter: Reporter,
    scale: float,
    repeats: int,
    texts: Sequence[str],
    query: str,
    cache_dir: Path,
) -> dict[str, Any]:
    """Both kinds, ``repeats`` rounds each (a new subscription per round, on one server
    per kind), then the in-process split. ``texts``: what the writer appends (in turn);
    ``query``: the semantic filter's. Which texts the semantic filter must deliver is
    worked out from the default model's vectors of them (the bench's cache, ``cache_dir``:
    the model runs here only for texts not cached yet)."""
    n = scaled(BASE_APPENDS, scale, MIN_APPENDS)
    n_sem = scaled(BASE_SEMANTIC_APPENDS, scale, MIN_SEMANTIC_APPENDS)
    plan = {
        kind: [
            [(r * (count + WARMUP) + i) % len(texts) for i in range(count + WARMUP)]
            for r in range(repeats)
        ]
        for kind, count in (("plain", n), ("semantic", n_sem))
    }
    wanted = sorted({i for rows in plan["semantic"] for i in rows})
    cache = VectorCache(cache_dir, LazyEmbedder())
    try:
        vectors = cache.vectors([texts[i] for i in wanted])
        q = cache.vectors([query])[0]
    finally:
        cache.close()
    sims_of = dict(zip(wanted, (vectors @ (q / np.linalg.norm(q))).tolist(), strict=True))
    semantic_filter = {
        "namespaces": [NAMESPACE],
        "semantic": {"query": query, "threshold": SEMANTIC_THRESHOLD},
    }
    kinds = {
        "plain": (False, {"namespaces": [NAMESPACE]}, PACE),
        "semantic": (True, semantic_filter, SEMANTIC_PACE),
    }
    results: dict[str, Any] = {}
    for kind, (semantic, flt, pace) in kinds.items():
        path = scratch.new(f"latency-{kind}")
        server = _Server(path, semantic).start()
        rounds = []
        try:
            with reporter.task(f"pubsub latency: {kind}", repeats) as tick:
                for r in range(repeats):
                    idx = plan[kind][r]
                    batch = [texts[i] for i in idx]
                    sims = [sims_of[i] for i in idx] if semantic else None
                    rounds.append(_measure(server, f"{kind}-{r}", flt, batch, pace, sims))
                    tick(1)
        finally:
            server.stop()
            scratch.remove(path)
        results[kind] = {
            "p50_ms": spread([x["ack_to_receipt"]["p50_ms"] for x in rounds]),
            "p99_ms": spread([x["ack_to_receipt"]["p99_ms"] for x in rounds]),
            "send_to_receipt_p50_ms": spread([x["send_to_receipt"]["p50_ms"] for x in rounds]),
            "send_to_receipt_p99_ms": spread([x["send_to_receipt"]["p99_ms"] for x in rounds]),
            "append_p50_ms": spread([x["append_ms"]["p50_ms"] for x in rounds]),
            "achieved_per_s": spread([x["achieved_per_s"] for x in rounds]),
            "delivered_share": sum(x["delivered"] for x in rounds)
            / sum(x["appends"] for x in rounds),
            "rounds": rounds,
        }
    embedded = []
    with reporter.task("pubsub latency: in process", repeats) as tick:
        for r in range(repeats):
            embedded.append(_embedded(scratch, [texts[i] for i in plan["plain"][r]], PACE))
            tick(1)
    results["embedded"] = {
        "p50_ms": spread([x["ack_to_receipt"]["p50_ms"] for x in embedded]),
        "p99_ms": spread([x["ack_to_receipt"]["p99_ms"] for x in embedded]),
        "ack_to_committed_p50_ms": spread([x["ack_to_committed"]["p50_ms"] for x in embedded]),
        "ack_to_committed_p99_ms": spread([x["ack_to_committed"]["p99_ms"] for x in embedded]),
        "rounds": embedded,
    }
    plain = results["plain"]
    results["meets_p50"] = plain["p50_ms"]["median"] <= GOAL_P50_MS
    results["meets_p99"] = plain["p99_ms"]["median"] <= GOAL_P99_MS
    return {
        "parameters": {
            "appends": n,
            "semantic_appends": n_sem,
            "pace_per_s": PACE,
            "semantic_pace_per_s": SEMANTIC_PACE,
            "warmup_appends": WARMUP,
            "semantic_threshold": SEMANTIC_THRESHOLD,
            "semantic_query": query,
            "ack_interval_s": ACK_INTERVAL,
            "repeats": repeats,
        },
        "goal": {"p50_ms": GOAL_P50_MS, "p99_ms": GOAL_P99_MS},
        "results": results,
    }


__all__ = ["run"]
