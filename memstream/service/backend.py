"""What the service runs on: the embedded runtime, or a Kafka worker's shards.

A :class:`Backend` answers reads and takes writes; it knows nothing of principals (the
service checks them before a call gets here). ``caller`` is passed to the reads only so
that a backend that forwards a read (a worker, to a partition's owner) can forward who
asked, and never forward a read twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from memstream.projections.policy import PolicyState
from memstream.projections.search import SearchQuery
from memstream.queries import AuditQuery, ListQuery, Point
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Event, Original
from memstream.schemas.memcube import MemState, Outcome
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.streams.feed import DecidedFeed
from memstream.streams.log import ChainBreak

from .caller import Caller

if TYPE_CHECKING:
    from memstream.governance.retention import RetentionReport
    from memstream.pubsub.hub import SubscriptionHub

__all__ = ["Backend"]


class Backend(Protocol):
    """The operations and reads a :class:`~memstream.service.MemoryService` runs on."""

    #: decodes and validates wire events for this backend's registry and limits
    codec: EventCodec
    #: the log's partitions (1 for an embedded store)
    partitions: int

    def vector_dim(self) -> tuple[int, str] | None:
        """(dimension, model id) a producer's vector must fit, or None to accept any."""
        ...

    def append(self, events: Sequence[Event]) -> list[Outcome]:
        """Append validated events; one outcome per event, in order."""
        ...

    def get(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None: ...

    def history(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]: ...

    def list_memories(self, caller: Caller, q: ListQuery, *, min_offset: int | None) -> MemoryPage:
        """Memories at their current version in creation order (``q`` checked)."""
        ...

    def audit(
        self, caller: Caller, q: AuditQuery, *, partition: int | None, min_offset: int | None
    ) -> AuditPage: ...

    def search(
        self,
        caller: Caller,
        q: SearchQuery,
        *,
        min_offset: int | None,
        partitions: list[int] | None,
    ) -> list[SearchHit]: ...

    def verify(self, progress: Callable[[int], None] | None) -> ChainBreak | None:
        """Recompute the log's hash chain; the first record that breaks it, or None."""
        ...

    def run_retention(self, now: datetime | None, dry_run: bool) -> RetentionReport:
        """One pass of the retention scheduler as of ``now`` (None: its clock)."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything appended is projected (``timeout``: at most that long)."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """Projections caught up and persisted, erased bytes gone from every file: the
        offset covered and the seconds it took."""
        ...

    def feed(self) -> DecidedFeed:
        """The log of decided events, to follow from any offset."""
        ...

    def head(self) -> int:
        """The last offset in the log (-1: empty)."""
        ...

    def health(self) -> dict[str, Any]:
        """What this process is (pid, version, and the store or the worker)."""
        ...

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether reads and writes are served now, and the state that says so."""
        ...

    def policy(self) -> PolicyState:
        """The governance rules in force now (principals, tokens, grants, policies)."""
        ...

    def policy_at(self, as_of: Point) -> PolicyState:
        """The rules as they stood at an offset or a time of the log."""
        ...

    def original(self, memory_id: str, version: int) -> Original | None:
        """What a redacted version held before redaction (its event's sealed ``original``),
        or None when it was not redacted (or its key was destroyed)."""
        ...

    def governance_log(self) -> list[tuple[int, str, str, str, int, dict[str, Any]]]:
        """Accepted governance events in log order (see ``DuckStore.governance_rows``)."""
        ...

    def namespaces(self) -> frozenset[str]:
        """Every namespace that has held a memory."""
        ...

    def decided(self, memory_id: str) -> MemState | None:
        """A memory's state as decided (ahead of the projections), or None if unknown."""
        ...

    def placement(self, memory_id: str) -> tuple[str, str | None] | None:
        """(namespace, subject) of a memory, or None if unknown."""
        ...

    def hub(self) -> SubscriptionHub | None:
        """The subscriptions this process serves (None: it serves none)."""
        ...

    def query_model(self) -> tuple[int, str] | None:
        """(dimension, model id) of the store's embedding model (None: it keeps none)."""
        ...

    def embed_query(self, text: str) -> Sequence[float]:
        """A query text's vector, by the store's embedding model (a semantic filter's)."""
        ...

    def store_id(self) -> str:
        """The identity of this store's log (a published memory's provenance)."""
        ...

    def status(self, caller: Caller, cluster: bool) -> dict[str, Any]:
        """Offsets and lag of what this process serves (``cluster``: of every member)."""
        ...

    def backup(self, dest: Path) -> dict[str, Any]:
        """A consistent copy of the log and keys in ``dest``: dest, records, head."""
        ...

    def replay_copy(self, into: Path, to: Point | None) -> dict[str, Any]:
        """The log up to ``to`` copied into a new read-only store: into, records, to_offset."""
        ...
