"""The reads every SDK shares: their signatures, and the query types they build.

:class:`Reads` declares ``get``, ``history``, ``audit`` and ``search`` once; each SDK
implements the four hooks (``_get``...) over its backend: the embedded store over the
service in its process, the HTTP and Kafka clients over the HTTP API. A search is a
:class:`~memstream.projections.search.SearchQuery` and an audit read an
:class:`AuditQuery` all the way to the backend that runs it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memstream.projections.search import DEFAULT_ALPHA, SearchQuery
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version

__all__ = ["LIST_STATES", "AuditQuery", "ListQuery", "Reads", "SearchQuery"]

#: A point in the log: an offset, or a time (``recorded_at``, with a timezone).
Point = datetime | int


@dataclass(frozen=True)
class AuditQuery:
    """Which audit entries to read, in log order (every given filter must match)."""

    namespace: str | None = None
    memory_id: str | None = None
    actor: str | None = None
    type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: the cursor: entries after this offset (a page's ``next_after``)
    after: int | None = None
    as_of: Point | None = None
    limit: int = 100


#: The states a list shows when it names none: the memories in use (search's default).
LIST_STATES = ("active", "activated")


@dataclass(frozen=True)
class ListQuery:
    """Which memories to list, in creation order (every given filter must match)."""

    namespace: str | None = None
    #: None: :data:`LIST_STATES`
    states: Sequence[str] | None = None
    #: memories with every one of these tags
    tags: Sequence[str] = ()
    #: the cursor: memories created after this offset (a page's ``next_after``)
    after: int | None = None
    limit: int = 100


class Reads(abc.ABC):
    """The read API: a memory, its history, the audit trail, search.

    Every read takes ``min_offset``: pass the offset of your last write to read your own
    writes. ``namespace`` names where a memory lives; the Kafka runtime needs it (it names
    the partition), an embedded store ignores it.
    """

    def get(
        self,
        memory_id: str,
        *,
        namespace: str | None = None,
        version: int | None = None,
        as_of: Point | None = None,
        min_offset: int | None = None,
    ) -> Memory | None:
        """A memory now, at ``version``, or as of a time (``recorded_at``) or an offset."""
        return self._get(memory_id, namespace, version, as_of, min_offset)

    def history(
        self,
        memory_id: str,
        *,
        namespace: str | None = None,
        include_parents: bool = True,
        as_of: Point | None = None,
        min_offset: int | None = None,
    ) -> list[Version]:
        """The version chain, oldest first, with merge parents' chains."""
        return self._history(memory_id, namespace, include_parents, as_of, min_offset)

    def list_memories(
        self,
        namespace: str | None = None,
        *,
        states: str | Sequence[str] | None = None,
        tags: str | Sequence[str] | None = None,
        after: int | None = None,
        limit: int = 100,
        min_offset: int | None = None,
    ) -> MemoryPage:
        """Memories in creation order, a page at a time: those of ``namespace`` (every
        one's without; the Kafka runtime needs it), in ``states`` (default
        :data:`LIST_STATES`), with every tag of ``tags``. Pass ``page.next_after`` as
        ``after`` for the next page."""
        if isinstance(states, str):
            states = [states]
        if isinstance(tags, str):
            tags = [tags]
        q = ListQuery(namespace=namespace, states=states, tags=tags or (), after=after, limit=limit)  # type: ignore[arg-type]  # checked by the service
        return self._list(q, min_offset)

    def audit(
        self,
        namespace: str | None = None,
        *,
        memory_id: str | None = None,
        actor: str | None = None,
        type: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int | None = None,
        as_of: Point | None = None,
        limit: int = 100,
        partition: int | None = None,
        min_offset: int | None = None,
    ) -> AuditPage:
        """Audit entries in log order; pass ``page.next_after`` as ``after`` for the next
        page. ``partition`` reads a whole partition of the Kafka runtime (incidents
        included)."""
        q = AuditQuery(
            namespace=namespace, memory_id=memory_id, actor=actor, type=type, status=status,
            since=since, until=until, after=after, as_of=as_of, limit=limit,
        )  # fmt: skip
        return self._audit(q, partition, min_offset)

    def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        namespaces: str | Sequence[str] | None = None,
        k: int = 10,
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        include_archived: bool = False,
        as_of: Point | None = None,
        exact: bool = False,
        alpha: float | None = None,
        query_hints: bool = True,
        min_offset: int | None = None,
    ) -> list[SearchHit]:
        """Memories matching ``query`` (text) or ``vector``, best first, with their scores.

        By default (``alpha=None``) a memory's score is its semantic similarity plus a
        small bonus for the BM25 of its own text (docs/search.md, "Fusion"). With an
        ``alpha``, semantic (vector) and keyword (BM25) rankings are fused by weighted
        reciprocal rank: ``alpha`` is the semantic weight (1 = semantic only, 0 = keyword
        only). Filters narrow the
        candidates exactly (no recall lost): ``namespaces``, ``tags_any``/``tags_all``,
        ``states`` (default active and activated, plus archived with
        ``include_archived``), ``kinds``, ``created_*``/``updated_*`` (timezone-aware),
        ``metadata`` (equality per key). ``exact`` scores every candidate by brute force;
        ``as_of`` (a time or an offset) searches the versions valid then. Pass the offset
        of your last write as ``min_offset`` to find it. Without a namespace the Kafka
        runtime gathers from every partition.
        """
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        q = SearchQuery(
            query=query, vector=vector, namespaces=namespaces, k=k, tags_any=tags_any,
            tags_all=tags_all, states=states, kinds=kinds, created_after=created_after,
            created_before=created_before, updated_after=updated_after,
            updated_before=updated_before, metadata=metadata or {},
            include_archived=include_archived, as_of=as_of, exact=exact,
            alpha=DEFAULT_ALPHA if alpha is None else alpha, query_hints=query_hints,
        )  # fmt: skip
        return self._search(q, min_offset)

    # -- what each SDK implements -----------------------------------------------------------------

    @abc.abstractmethod
    def _get(
        self,
        memory_id: str,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None: ...

    @abc.abstractmethod
    def _history(
        self,
        memory_id: str,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]: ...

    @abc.abstractmethod
    def _audit(self, q: AuditQuery, partition: int | None, min_offset: int | None) -> AuditPage: ...

    @abc.abstractmethod
    def _list(self, q: ListQuery, min_offset: int | None) -> MemoryPage: ...

    @abc.abstractmethod
    def _search(self, q: SearchQuery, min_offset: int | None) -> list[SearchHit]: ...
