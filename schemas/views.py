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
