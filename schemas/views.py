"""What reads return: a memory (MemCube with content), a version, an audit entry.

These are the shapes of the SDK's return values and of the HTTP API's JSON bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Parent(msgspec.Struct, frozen=True):
    memory_id: str
    version: int


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    """A memory as the store holds it (now, at a version, or as of a past point)."""

    memory_id: str
    namespace: str
    subject: str
    kind: str
    state: str
    frozen: bool
    version: int
    revision: int
    text: str | None
    content_hash: str | None
    tags: list[str]
    metadata: dict[str, Any]
    source: str | None
    owner: str | None
    visibility: str
    priority: int
    ttl_seconds: int | None
    retention_days: int | None
    #: the expiry time the create named (``expires_at``), if any
    expires_at: datetime | None = None
    parents: list[Parent]
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    #: The log offset this view reflects (the last event that changed the memory).
    offset: int


class Version(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a memory's content: what made it, and where it came from."""

    memory_id: str
    version: int
    op: str
    text: str | None
    content_hash: str | None
    tags: list[str]
    metadata: dict[str, Any]
    parents: list[Parent]
    rolled_back_to: int | None
    event_id: str
    offset: int
    recorded_at: datetime
    actor: str


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log with its verdict: who did what, when, why, and what came of it."""

    offset: int
    event_id: str
    type: str
    namespace: str
    memory_id: str
    subject: str
    actor: str
    context: dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime
    expected_version: int | None
    correlation_id: str | None
    causation_id: str | None
    status: str
    code: str | None
    reason: str | None
    why: str | None
    version: int | None
    revision: int | None
    state: str | None
    chain_hash: str
    tombstone: bool
    #: an erase's scope (``memory`` or ``subject``); ``None`` for other events
    scope: str | None = None
    #: the memories an accepted erase erased
    erased: list[str] = []


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of audit entries; pass ``next_after`` as ``after`` to get the next page."""

    entries: list[AuditEntry]
    next_after: int | None


class MemoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of memories in creation order; pass ``next_after`` as ``after`` to get the
    next page (None: this is the last)."""

    memories: list[Memory]
    next_after: int | None


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    """One search result: the memory, its fused score and the two scores it came from.

    ``semantic_score`` is the cosine similarity to the query (``None``: not among the
    semantic candidates), ``keyword_score`` the BM25 score (``None``: no query term
    matched, or not among the keyword candidates). ``score`` is the weighted
    reciprocal-rank fusion of the two rankings (see ``docs/search.md``). The usage
    indicators are those recorded before this search (not part of replayed state).
    """

    memory: Memory
    score: float
    semantic_score: float | None
    keyword_score: float | None
    access_count: int = 0
    last_access: datetime | None = None
    heat: float = 0.0


class Provenance(msgspec.Struct, frozen=True, kw_only=True):
    """Where a published memory comes from: the store, its namespace, the memory and its
    version, and the publication it was delivered under."""

    store: str
    namespace: str
    memory_id: str
    version: int | None
    publication: str


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event delivered to a subscription.

    ``position`` is the event's offset: acknowledge it (or every position up to it), and
    resume from it (the SSE event id). ``attempt`` counts deliveries of it (2 and more:
    delivered again after no acknowledgement). A ``tombstone`` carries no content: an erase,
    or an event of a memory erased since (its payload then holds the clear fields only).
    ``memory`` is the memory's current view when the subscription asks for it.
    """

    subscription: str
    position: int
    attempt: int
    kind: str  # "event" | "tombstone"
    event: dict[str, Any]
    outcome: dict[str, Any]
    memory: Memory | None = None
    provenance: Provenance | None = None
    score: float | None = None
    #: the log partition (the Kafka runtime: ``position`` is ``offset * 1024 + partition``)
    partition: int | None = None


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Nothing to deliver: the subscription has looked at every event up to ``position``
    (of ``head``, the log's last offset); ``cursor`` is what it has resolved."""

    subscription: str
    position: int
    cursor: int
    head: int
    in_flight: int
    at: datetime
    #: the Kafka runtime: the offset looked at in each partition (``position`` is -1)
    partitions: dict[int, int] | None = None


class SubscriptionView(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as it stands, with its position when this process serves it."""

    name: str
    owner: str
    filter: dict[str, Any]
    start: str
    start_offset: int | None = None
    start_time: datetime | None = None
    view: bool
    max_in_flight: int
    ack_timeout: float
    publication: str | None = None
    description: str | None = None
    generation: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    cursor: int | None = None
    parked: int | None = None
    stats: dict[str, Any] | None = None


class PublicationView(msgspec.Struct, frozen=True, kw_only=True):
    """A publication and its terms."""

    name: str
    namespace: str
    tag: str | None = None
    memory_id: str | None = None
    to: list[str]
    expires_at: datetime | None = None
    max_deliveries: int | None = None
    period_seconds: int
    redact: bool
    description: str | None = None
    withdrawn: bool
    published_at: datetime
    published_by: str
    updated_at: datetime
    updated_by: str


class ParkedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery its consumer rejected (parked): kept aside, with the consumer's reason."""

    subscription: str
    position: int
    event_id: str
    memory_id: str
    attempts: int
    reason: str | None
    parked_at: datetime
