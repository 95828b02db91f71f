"""The worker backend: a Kafka worker's shards, one per partition it owns.

A read names its partition (``namespace=``, or ``partition=`` for a whole partition's
audit). A partition owned here is read from its shard once that shard has caught up (or
reached ``min_offset``), waiting up to ``read_wait``: then :class:`PartitionUnavailable`
with the lag. A partition another worker owns is read there: the read is forwarded, with
its caller, through the HTTP client's reads (never twice: a forwarded read that lands on
a non-owner answers 503). A search is gathered from every owner of the partitions asked
for, the query embedded once, here.

Calls come from the HTTP threadpool; the node lives in the worker's event loop, so its
coroutines run there (:meth:`WorkerBackend._run`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from memstream.client.reads import HttpReads
from memstream.errors import BadRequest, PartitionUnavailable, SearchDisabled, Unsupported
from memstream.projections import reads
from memstream.projections.embedding import embed_query
from memstream.projections.policy import PolicyState
from memstream.projections.search import SearchQuery, in_scope
from memstream.queries import AuditQuery, ListQuery, Point
from memstream.schemas.events import Event, Original
from memstream.schemas.memcube import MemState, Outcome
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.streams.feed import DecidedFeed
from memstream.streams.kafka.node import Node
from memstream.streams.kafka.partitioning import partition_of
from memstream.streams.kafka.policy import PolicyNotReady
from memstream.streams.kafka.shard import Shard
from memstream.streams.log import ChainBreak
from memstream.wire import CHECKED_HEADER, CONTEXT_HEADERS, FORWARDED_HEADER, SearchRequest

from .caller import Caller
from .merged import PartitionedHub, ShardHubs

__all__ = ["WorkerBackend"]

T = TypeVar("T")
#: How long a worker reuses the namespaces its peers reported (seconds).
NAMESPACES_TTL = 1.0
_NO_LOG = (
    "a Kafka deployment's log is its events topic, not this worker's: back up or replay the "
    "topic (each partition's audit chains its records)"
)


class _Peer(HttpReads):
    """Another worker's HTTP API, read on behalf of ``caller``: authenticated with the
    cluster token (when there is one), naming the caller, its call context and whether it
    is checked, so that the receiving worker checks the same caller."""

    def __init__(self, http: httpx.Client, url: str, caller: Caller, cluster_token: str | None):
        self._http, self.url, self.actor, self.timeout = http, url, caller.principal, 30.0
        self._headers = {FORWARDED_HEADER: "1"}
        if cluster_token is not None:
            self._headers["authorization"] = f"Bearer {cluster_token}"
        if caller.enforced:
            self._headers[CHECKED_HEADER] = "1"
        for name, header in CONTEXT_HEADERS.items():
            if (value := getattr(caller.context, name)) is not None:
                self._headers[header] = value

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        kw["headers"] = {**self._headers, **(kw.get("headers") or {})}
        return super()._request(method, path, **kw)


class WorkerBackend:
    """:class:`~memstream.service.backend.Backend` over a worker's :class:`Node`.

    ``me`` is this worker's URL as the others know it; ``members`` returns every member's
    URL with the partitions of the requests topic it owns (the group's assignment).
    """

    def __init__(
        self,
        node: Node,
        loop: asyncio.AbstractEventLoop,
        *,
        me: str,
        members: Callable[[], dict[str, list[int]]],
        read_wait: float = 10.0,
        cluster_token: str | None = None,
    ):
        self.node = node
        self.cluster_token = cluster_token
        self.codec = node.codec
        self.partitions = node.settings.partitions
        self.loop = loop
        self.me = me.rstrip("/")
        self.members = members
        self.read_wait = read_wait
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="memstream-gather")
        self._peer_namespaces: tuple[float, frozenset[str]] | None = None
        extras = getattr(getattr(node, "processors", None), "extras", None)
        self._pubsub = PartitionedHub(self, extras) if isinstance(extras, ShardHubs) else None

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        for client in self._clients.values():
            client.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the worker's event loop; its result, here."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def vector_dim(self) -> tuple[int, str] | None:
        return None  # a shard checks a producer's vector when it indexes it

    def append(self, events: Sequence[Event]) -> list[Outcome]:
        return self._run(self.node.publisher.publish(list(events)))

    # -- where a read goes -----------------------------------------------------------------------

    def _owner(self, p: int) -> str | None:
        for url, parts in self.members().items():
            if p in parts:
                return url.rstrip("/")
        return None

    def _peer(self, url: str, caller: Caller) -> _Peer:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = httpx.Client(base_url=url, timeout=30.0)
        return _Peer(client, url, caller, self.cluster_token)

    def _remote(self, p: int, caller: Caller) -> _Peer:
        """The owner of partition ``p`` (not this worker), to forward a read to."""
        url = self._owner(p)
        if url is None or url == self.me:
            raise PartitionUnavailable(
                f"partition {p} has no owner right now (a rebalance?); retry", partition=p
            )
        if caller.forwarded:  # never forward twice
            raise PartitionUnavailable("ownership is moving", partition=p)
        return self._peer(url, caller)

    def _partition(self, namespace: str | None, partition: int | None) -> int:
        if partition is not None:
            if not 0 <= partition < self.partitions:
                raise BadRequest(
                    f"partition must be 0..{self.partitions - 1}, not {partition!r}",
                    field="query.partition",
                )
            return partition
        if namespace:
            return partition_of(namespace.encode(), self.partitions)
        raise BadRequest(
            "namespace is required in the Kafka runtime (it names the partition that holds "
            "the memory); or partition= to read one partition's audit",
            field="query.namespace",
        )

    def _route(
        self, caller: Caller, namespace: str | None, partition: int | None, min_offset: int | None
    ) -> Shard | _Peer:
        """The shard that answers here (caught up, or at ``min_offset``), or the owner."""
        p = self._partition(namespace, partition)
        node = self.node
        if p not in node.owned:
            return self._remote(p, caller)
        deadline = time.monotonic() + self.read_wait
        while True:
            shard = node.shards.get(p)
            offset = shard.offset if shard is not None else -1
            behind = p in node.catching_up if min_offset is None else offset < min_offset
            if shard is not None and not behind:
                return shard
            if time.monotonic() > deadline:
                end = node.ends.get(p, offset + 1)
                lag = max(0, (min_offset if min_offset is not None else end - 1) - offset)
                raise PartitionUnavailable(
                    f"partition {p} is catching up (lag {lag}); retry",
                    partition=p, error="catching_up", offset=offset, lag=lag,
                )  # fmt: skip
            time.sleep(0.05)

    @staticmethod
    def _offset(shard: Shard, as_of: Point | None) -> int | None:
        """A point of the shard's partition: an offset, or the last one recorded by a time."""
        return shard.duck.offset_at_time(as_of) if isinstance(as_of, datetime) else as_of

    # -- reads ---------------------------------------------------------------------------------

    def get(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None:
        at = self._route(caller, namespace, None, min_offset)
        if isinstance(at, _Peer):
            return at.get(
                memory_id, namespace=namespace, version=version, as_of=as_of,
                min_offset=min_offset,
            )  # fmt: skip
        if version is None and as_of is None:
            views = self.node.processors.views_of(at.partition, at.offset)
            if views is not None:  # as fresh as the shard the route checked
                return views.get(memory_id)
        return reads.get_memory(at.duck, memory_id, version, self._offset(at, as_of))

    def history(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]:
        at = self._route(caller, namespace, None, min_offset)
        if isinstance(at, _Peer):
            return at.history(
                memory_id, namespace=namespace, include_parents=include_parents, as_of=as_of,
                min_offset=min_offset,
            )  # fmt: skip
        if as_of is None:
            views = self.node.processors.views_of(at.partition, at.offset)
            if views is not None:
                return views.history(memory_id, include_parents)
        return reads.history(at.duck, memory_id, include_parents, self._offset(at, as_of))

    def list_memories(self, caller: Caller, q: ListQuery, *, min_offset: int | None) -> MemoryPage:
        at = self._route(caller, q.namespace, None, min_offset)
        if isinstance(at, _Peer):
            return at._list(q, min_offset)
        return reads.list_memories(
            at.duck, namespace=q.namespace, states=list(q.states or ()), tags=list(q.tags),
            after=q.after, limit=q.limit,
        )  # fmt: skip

    def audit(
        self, caller: Caller, q: AuditQuery, *, partition: int | None, min_offset: int | None
    ) -> AuditPage:
        at = self._route(caller, q.namespace, partition, min_offset)
        if isinstance(at, _Peer):
            return at._audit(q, partition, min_offset)
        fields = {f.name: getattr(q, f.name) for f in dataclasses.fields(q) if f.name != "as_of"}
        return reads.audit(at.duck, **fields, as_of_offset=self._offset(at, q.as_of))

    def search(
        self,
        caller: Caller,
        q: SearchQuery,
        *,
        min_offset: int | None,
        partitions: list[int] | None,
    ) -> list[SearchHit]:
        node = self.node
        if not node.semantic:
            raise SearchDisabled(
                "search is off on these workers (started with MEMSTREAM_SEMANTIC=0)"
            )
        q.check(len(q.vector) if q.vector is not None else 0)  # the dimension: at the shard
        as_of = q.as_of
        if isinstance(as_of, int):
            raise BadRequest(
                "as_of must be a time in the Kafka runtime (offsets are per partition), "
                "e.g. 2026-01-01T12:00:00Z",
                field="body.as_of",
            )
        if partitions is not None:
            parts = sorted(set(partitions))
        elif q.namespaces:
            parts = sorted({partition_of(n.encode(), self.partitions) for n in q.namespaces})
        else:
            parts = list(range(self.partitions))
        if q.vector is None and q.query is not None and q.alpha != 0.0:  # 0: keyword only
            vec = embed_query(node.model, q.query)  # once, here; the owners get its vector
            q = dataclasses.replace(q, vector=[float(x) for x in vec])
        local = [p for p in parts if p in node.owned]
        remote: dict[str, list[int]] = {}
        for p in parts:
            if p not in node.owned:
                remote.setdefault(self._remote(p, caller).url, []).append(p)
        wait = min_offset if len(parts) == 1 else None

        async def here() -> list[list[SearchHit]]:
            at = dataclasses.replace(q, as_of=None)
            return await asyncio.gather(*(node.search_local(p, at, as_of, wait) for p in local))

        asked = [
            self._pool.submit(
                self._peer(url, caller).search_request,
                SearchRequest.of(q, min_offset=wait, partitions=ps),
            )
            for url, ps in remote.items()
        ]
        try:
            hits = [h for group in self._run(here()) for h in group]
        except LookupError as e:
            raise PartitionUnavailable(str(e), error="catching_up") from None
        for future in asked:
            # the owner checked the caller itself; what it sent back is held to the scope here
            # too (a peer started without authentication would not have)
            hits += [h for h in future.result() if _within(h, q)]
        # each partition ranked its own memories; merged by fused score, then similarity
        hits.sort(key=lambda h: (-h.score, -(h.semantic_score or 0.0), h.memory.memory_id))
        return hits[: q.k]

    # -- the process ---------------------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None) -> ChainBreak | None:
        raise Unsupported(_NO_LOG)

    def flush(self, timeout: float | None = None) -> None:
        raise Unsupported("a worker cannot flush the deployment; read with min_offset")

    def run_retention(self, now: datetime | None, dry_run: bool) -> Any:
        raise Unsupported(
            "the retention scheduler runs in embedded stores (memstream serve, "
            "MemoryStore.open); a Kafka worker does not run it"
        )

    def checkpoint(self) -> dict[str, Any]:
        raise Unsupported(
            "a worker checkpoints each of its shards by itself after an erase (and on "
            "shutdown); there is no deployment-wide checkpoint"
        )

    def feed(self) -> DecidedFeed:
        raise Unsupported(
            "a Kafka deployment's decided events are its events and outcomes topics (kept "
            "as long as the events): read them with any Kafka client, from any offset"
        )

    def head(self) -> int:
        raise Unsupported(_NO_LOG)

    def hub(self) -> PartitionedHub | None:
        """The subscriptions of every partition: the owned ones from their shards, the
        others through their owners (memstream/service/merged.py)."""
        return self._pubsub

    def query_model(self) -> tuple[int, str] | None:
        if not self.node.semantic:
            return None
        return self.node.model.dim, self.node.model.model_id

    def embed_query(self, text: str) -> list[float]:
        model = self.node.model if self.node.semantic else None
        if model is None:
            raise SearchDisabled("this deployment keeps no search indexes (semantic off)")
        return [float(x) for x in embed_query(model, text)]

    def store_id(self) -> str:
        return str(self.node.settings.events)

    # -- governance: the rules as this worker's follower of their partition has them --------------

    def _policy_ready(self) -> None:
        try:
            self.node.policy.wait_ready(self.read_wait)
        except PolicyNotReady as e:
            raise PartitionUnavailable(
                str(e), partition=self.node.policy.partition, error="catching_up",
                offset=e.offset, lag=max(0, e.wanted - e.offset),
            ) from None  # fmt: skip

    def policy(self) -> PolicyState:
        """The rules in force, once the follower has read the governance partition up to
        the end it had at the worker's start (503 until then, after ``read_wait``)."""
        self._policy_ready()
        return self.node.policy.state

    def policy_at(self, as_of: Point) -> PolicyState:
        """The rules as they stood at an offset of the governance partition (of the events
        topic, as ``rules().offset`` and the governance audit show them), or at a time."""
        self._policy_ready()
        follower = self.node.policy
        if isinstance(as_of, datetime):
            return PolicyState.fold(follower.rows_until(_micros(as_of)))
        try:
            follower.wait_for(as_of, self.read_wait)
        except PolicyNotReady as e:
            raise PartitionUnavailable(
                str(e), partition=follower.partition, error="catching_up", offset=e.offset,
                lag=max(0, e.wanted - e.offset),
            ) from None  # fmt: skip
        return PolicyState.fold(follower.rows(as_of))

    def decided(self, memory_id: str) -> MemState | None:
        """The memory's decided state, if a shard this worker owns holds it (a memory of
        another worker's partition: None; a revise there is screened on its own fields)."""
        for shard in list(self.node.shards.values()):
            m = shard.state.memories.get(memory_id)
            if m is not None:
                return m
        return None

    def original(self, memory_id: str, version: int) -> Original | None:
        raise Unsupported("reading a redacted memory's original is not served by Kafka workers yet")

    def governance_log(self) -> list[tuple[int, str, str, str, int, dict[str, Any]]]:
        self._policy_ready()
        return self.node.policy.rows()

    def own_namespaces(self) -> frozenset[str]:
        """The namespaces of the partitions this worker owns now."""
        out: frozenset[str] = frozenset()
        for shard in list(self.node.shards.values()):
            out = out | shard.state.namespaces
        return out

    def namespaces(self) -> frozenset[str]:
        """Every namespace of the deployment: this worker's and what each peer reports for
        its own (asked in parallel, remembered for ``NAMESPACES_TTL`` seconds). A caller's
        search scope is computed over them (plus the namespaces a query names)."""
        mine = self.own_namespaces()
        now = time.monotonic()
        with self._lock:
            cached = self._peer_namespaces
        if cached is not None and now - cached[0] < NAMESPACES_TTL:
            return mine | cached[1]
        urls = [u.rstrip("/") for u in self.members() if u.rstrip("/") != self.me]
        system = Caller(principal="memstream.worker")

        def ask(url: str) -> frozenset[str]:
            try:
                got = self._peer(url, system).status()
            except Exception:  # a peer that does not answer serves no search now either
                return frozenset()
            return frozenset(got.get("namespaces") or ())

        theirs: frozenset[str] = frozenset()
        for found in self._pool.map(ask, urls):
            theirs = theirs | found
        with self._lock:
            self._peer_namespaces = (now, theirs)
        return mine | theirs

    def placement(self, memory_id: str) -> tuple[str, str | None] | None:
        """(namespace, subject) of a memory of a partition owned here; None otherwise (a
        read on a worker names its namespace)."""
        for shard in list(self.node.shards.values()):
            m = shard.state.memories.get(memory_id)
            if m is not None:
                return m.namespace, m.subject
        return None

    def health(self) -> dict[str, Any]:
        from memstream import __version__

        return {"status": "ok", "pid": os.getpid(), "worker": self.me, "version": __version__}

    def _own_status(self) -> dict[str, Any]:
        st = self._run(self.node.status())
        return {**st, "url": self.me, "host": socket.gethostname()}

    def _peer_status(self, caller: Caller) -> dict[str, Any]:
        """Own status; to a peer's unchecked call (the cluster token) also the namespaces
        of the partitions owned here, for its callers' search scopes."""
        st = self._own_status()
        if caller.forwarded and not caller.enforced:
            st["namespaces"] = sorted(self.own_namespaces())
        return st

    def ready(self) -> tuple[bool, dict[str, Any]]:
        st = self._own_status()
        behind = sorted(int(p) for p, v in st["partitions"].items() if v["catching_up"])
        rules = st.get("governance", {}).get("ready", False)
        ready = st["started"] and not behind and rules
        body = {"ready": ready, "status": "ready" if ready else "unavailable", **st}
        if not ready:
            body["error"] = "unavailable"
            body["message"] = (
                "the worker is starting"
                if not st["started"]
                else f"partitions {behind} are catching up"
                if behind
                else "the governance rules are still being read"
            )
        return ready, body

    def status(self, caller: Caller, cluster: bool) -> dict[str, Any]:
        if not cluster:
            return self._peer_status(caller)
        # every member the assignor knows of (including this one), asked in parallel
        urls = sorted(u.rstrip("/") for u in self.members()) or [self.me]

        def ask(url: str) -> dict[str, Any]:
            if url == self.me:
                return self._own_status()
            try:
                return self._peer(url, caller).status()
            except Exception as e:
                return {"url": url, "error": repr(e)}

        return {"workers": list(self._pool.map(ask, urls))}

    def backup(self, dest: Path) -> dict[str, Any]:
        raise Unsupported(_NO_LOG)

    def replay_copy(self, into: Path, to: Point | None) -> dict[str, Any]:
        raise Unsupported(_NO_LOG)


def _micros(when: datetime) -> int:
    """µs since the epoch of an aware time (how the follower keeps ``recorded_at``)."""
    if when.tzinfo is None:
        raise BadRequest(
            "as_of must carry a timezone (e.g. 2026-01-01T00:00:00Z)", field="query.as_of"
        )
    return int(when.timestamp() * 1_000_000)


def _within(hit: SearchHit, q: SearchQuery) -> bool:
    """Whether a peer's hit is within the namespaces and the caller's scope ``q`` names."""
    m = hit.memory
    if q.namespaces is not None and m.namespace not in q.namespaces:
        return False
    return q.scope is None or in_scope(m, q.scope)
