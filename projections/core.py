"""The core projection, as rows: (logged event, outcome) pairs → table rows, in batches.

Pure: no I/O. :func:`project` turns a batch of decided events into column-oriented rows
for ``memories`` (collapsed to the last row per memory), ``versions``, ``transitions``,
``audit`` and ``artifacts``, plus the few set-wise instructions a batch can carry (copy the
content of an old version for a rollback; drop the plaintext of an erased subject). The
DuckDB store (:mod:`memstream.projections.duck`) writes one batch in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from memstream.schemas.keyid import KeyId
from memstream.schemas.memcube import KeyDestruction, Logged, MemState, Outcome

from .policy import GOVERNANCE_TYPES, body_of

#: Bump when the projection's rows change meaning: stores built by another version rebuild.
#: 3: per-memory keys (the audit's ``scope``; erase scopes; an erased memory loses its source)
#: 4: 64-bit columns for what an event may carry as a 64-bit integer (expected_version,
#:    priority, retention_days, an artifact's source_version)
#: 5: governance events (principals, tokens, grants, policies) kept in ``governance``;
#:    a memory's ``expires_at`` (the create's expiry time)
PROJECTOR_VERSION = 5

_json = msgspec.json.Encoder()


@dataclass
class Columns:
    """The rows of one table, added a row at a time and read as columns.

    A row is kept as the tuple it arrives in (one append per event, not one per column) and
    the columns are cut out of all the rows at once, in C (``zip(*rows)``), when ``data``
    is read, which the store does once per batch.
    """

    names: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(init=False, default_factory=list)

    def add(self, *values: Any) -> None:
        if len(values) != len(self.names):
            raise ValueError(f"a row of {len(self.names)} columns, got {len(values)} values")
        self.rows.append(values)

    @property
    def data(self) -> dict[str, tuple[Any, ...]]:
        """Column name → the column's values, in row order (the tuples ``zip`` cuts: Arrow
        takes them as they are)."""
        if not self.rows:
            return {n: () for n in self.names}
        return dict(zip(self.names, zip(*self.rows, strict=True), strict=True))

    def __len__(self) -> int:
        return len(self.rows)


MEMORY_COLUMNS = (
    "memory_id", "namespace", "subject", "kind", "state", "frozen", "version", "revision",
    "tags", "metadata", "source", "owner", "visibility", "priority", "ttl_seconds",
    "retention_days", "expires_at", "parents", "created_at", "updated_at", "created_by",
    "updated_by", "created_offset", "updated_offset",
)  # fmt: skip
VERSION_COLUMNS = (
    "memory_id", "version", "op", "text", "content_hash", "tags", "metadata", "parents",
    "copy_from", "event_id", "offset", "recorded_at", "actor", "vector",
)  # fmt: skip
TRANSITION_COLUMNS = (
    "offset", "memory_id", "namespace", "state", "frozen", "version", "revision", "recorded_at",
)  # fmt: skip
AUDIT_COLUMNS = (
    "offset", "event_id", "type", "schema_version", "namespace", "memory_id", "subject",
    "key_id", "actor", "context", "occurred_at", "recorded_at", "expected_version",
    "correlation_id", "causation_id", "status", "code", "reason", "why", "version",
    "revision", "state", "chain_hash", "tombstone", "scope",
)  # fmt: skip
ARTIFACT_COLUMNS = (
    "artifact_id", "memory_id", "namespace", "artifact_kind", "model", "path", "checksum",
    "size_bytes", "status", "source_version", "detail", "event_id", "offset", "recorded_at",
)  # fmt: skip

GOVERNANCE_COLUMNS = ("offset", "type", "name", "actor", "recorded_at", "body")


@dataclass
class CoreBatch:
    """Everything one batch writes. ``memories`` holds the last state per memory id."""

    memories: dict[str, MemState] = field(default_factory=dict)
    versions: Columns = field(default_factory=lambda: Columns(VERSION_COLUMNS))
    transitions: Columns = field(default_factory=lambda: Columns(TRANSITION_COLUMNS))
    audit: Columns = field(default_factory=lambda: Columns(AUDIT_COLUMNS))
    artifacts: Columns = field(default_factory=lambda: Columns(ARTIFACT_COLUMNS))
    #: accepted governance events, their clear payload as JSON (projections/policy.py)
    governance: Columns = field(default_factory=lambda: Columns(GOVERNANCE_COLUMNS))
    #: memory ids whose rolled-back versions must copy content, in log order
    rollbacks: list[tuple[str, int]] = field(default_factory=list)
    #: memories whose plaintext must be dropped, and the keys destroyed
    erased_memories: list[str] = field(default_factory=list)
    destroyed: list[KeyDestruction] = field(default_factory=list)
    #: subject → highest key generation seen in this batch
    key_generations: dict[str, int] = field(default_factory=dict)
    first_offset: int = -1
    last_offset: int = -1

    def __len__(self) -> int:
        return len(self.audit)


def memory_row(m: MemState) -> tuple[Any, ...]:
    # Lists and structs go to Arrow as tuples (``tags``; ``parents`` as (memory_id, version)
    # pairs, the struct's fields in order): no copy per row.
    return (
        m.memory_id, m.namespace, m.subject, m.kind, m.state, m.frozen, m.version, m.revision,
        m.tags, _json.encode(m.metadata).decode() if m.metadata else None, m.source,
        m.owner, m.visibility, m.priority, m.ttl_seconds, m.retention_days, m.expires_at,
        m.parents, m.created_at, m.updated_at,
        m.created_by, m.updated_by, m.created_offset, m.updated_offset,
    )  # fmt: skip


def project(pairs: list[tuple[Logged, Outcome]], batch: CoreBatch | None = None) -> CoreBatch:
    """Rows for a batch of decided events (appended to ``batch`` if given)."""
    b = batch if batch is not None else CoreBatch()
    # Rows are appended as tuples straight to each table's row list (``Columns.add``
    # without its call and its check: the tuples below have the columns' arity).
    add_audit = b.audit.rows.append
    add_transition = b.transitions.rows.append
    add_version = b.versions.rows.append
    encode = _json.encode
    memories = b.memories
    for logged, out in pairs:
        ev = logged.event
        p = ev.payload
        if b.first_offset < 0:
            b.first_offset = logged.offset
        b.last_offset = logged.offset
        why = getattr(p, "reason", None) if p is not None else (ev.clear or {}).get("reason")
        scope = ev.ref("scope") if ev.type == "erase" else None
        add_audit((
            logged.offset, ev.event_id, ev.type, ev.schema_version, ev.namespace, ev.memory_id,
            ev.effective_subject, logged.key_id, ev.actor,
            encode(ev.context).decode(), ev.occurred_at, logged.recorded_at,
            ev.expected_version, ev.correlation_id, ev.causation_id, out.status, out.code,
            out.reason, why, out.version, out.revision, out.state, logged.chain_hash.hex(),
            p is None, scope,
        ))  # fmt: skip
        if logged.key_id is not None:
            k = KeyId.parse(logged.key_id)
            if k.generation > b.key_generations.get(k.subject, 0):
                b.key_generations[k.subject] = k.generation
        if not out.accepted:
            continue
        for m in out.changes:
            memories[m.memory_id] = m
            add_transition((
                logged.offset, m.memory_id, m.namespace, m.state, m.frozen, m.version,
                m.revision, logged.recorded_at,
            ))  # fmt: skip
        t = ev.type
        if t in ("create", "merge", "revise", "rollback"):
            target = out.changes[0]
            copy_from = None
            text = getattr(p, "text", None) if p is not None else None
            if t == "rollback":
                copy_from = ev.ref("to_version")
                b.rollbacks.append((target.memory_id, target.version))
            if t == "revise" or t == "rollback":
                parents = ((target.memory_id, target.version - 1),)
            else:
                parents = target.parents
            add_version((
                target.memory_id, target.version, t, text,
                logged.content_hash if text is not None else None, target.tags,
                encode(target.metadata).decode() if target.metadata else None, parents,
                copy_from, ev.event_id, logged.offset, logged.recorded_at, ev.actor,
                getattr(p, "vector", None) if p is not None else None,
            ))  # fmt: skip
        elif t == "artifact_built":
            b.artifacts.add(
                ev.ref("artifact_id"), ev.memory_id, ev.namespace, ev.ref("artifact_kind"),
                ev.ref("model"), ev.ref("path"), ev.ref("checksum"), ev.ref("size_bytes"),
                ev.ref("status"), ev.ref("source_version"), ev.ref("detail"), ev.event_id,
                logged.offset, logged.recorded_at,
            )  # fmt: skip
        elif t in GOVERNANCE_TYPES:
            b.governance.add(
                logged.offset, t, ev.memory_id, ev.actor, logged.recorded_at,
                encode(body_of(ev)).decode(),
            )  # fmt: skip
        elif t == "erase":
            b.erased_memories.extend(m.memory_id for m in out.changes)
            if out.destroy_key is not None:
                b.destroyed.append(out.destroy_key)
    return b
