"""Reads over the DuckDB projection: a memory now, at a version, or as of a past offset;
its version chain with merge ancestors; the audit trail, filtered and paginated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from memstream.schemas.memcube import MemState
from memstream.schemas.views import AuditEntry, AuditPage, Memory, MemoryPage, Parent, Version

from .duck import DuckStore

_dec = msgspec.json.Decoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _meta(v: str | None) -> dict[str, Any]:
    return _dec.decode(v) if v else {}


def _parents(ps: list[dict] | None) -> list[Parent]:
    return [Parent(p["memory_id"], p["version"]) for p in ps or ()]


_MEMORY_SQL = """
SELECT m.memory_id, m.namespace, m.subject, m.kind, m.state, m.frozen, m.version,
       m.revision, v.text, v.content_hash, v.tags, v.metadata, m.source, m.owner,
       m.visibility, m.priority, m.ttl_seconds, m.retention_days, m.expires_at, m.parents,
       m.created_at, m.updated_at, m.created_by, m.updated_by, m.updated_offset AS "offset"
FROM memories m LEFT JOIN versions v ON v.memory_id = m.memory_id AND v.version = {version}
WHERE m.memory_id = ?
"""


#: The columns of a :class:`Memory` view, in field order.
VIEW_COLUMNS = (
    "memory_id", "namespace", "subject", "kind", "state", "frozen", "version", "revision",
    "text", "content_hash", "tags", "metadata", "source", "owner", "visibility", "priority",
    "ttl_seconds", "retention_days", "expires_at", "parents", "created_at", "updated_at",
    "created_by", "updated_by", "offset",
)  # fmt: skip

#: The FROM clause of memories at their current version (aliases ``m`` and ``v``).
CURRENT_SOURCE = (
    "memories m LEFT JOIN versions v ON v.memory_id = m.memory_id AND v.version = m.version"
)

#: Column expressions over :data:`CURRENT_SOURCE` that differ from ``m.<name>``.
CURRENT_EXPRESSIONS = {"offset": "m.updated_offset"}


def view_select(exprs: dict[str, str]) -> str:
    """The select list of :data:`VIEW_COLUMNS`, with ``exprs`` for the columns they name."""
    cols = []
    for c in VIEW_COLUMNS:
        if c in exprs:
            cols.append(f'{exprs[c]} AS "{c}"')
        elif c in ("text", "content_hash", "tags", "metadata"):
            cols.append(f"v.{c}")
        else:
            cols.append(f"m.{c}")
    return ", ".join(cols)


def view_from_row(row: tuple[Any, ...] | list[Any]) -> Memory:
    """A :class:`Memory` from a row selected with :func:`view_select`."""
    d = dict(zip(VIEW_COLUMNS, row, strict=True))
    return _memory(d)


def _memory(row: dict[str, Any]) -> Memory:
    row["tags"] = list(row["tags"] or [])
    row["metadata"] = _meta(row["metadata"])
    row["parents"] = _parents(row["parents"])
    return Memory(**row)


def memory_view(m: MemState, text: str | None, content_hash: str | None) -> Memory:
    """The view of a memory at a decided post-state, with its current content: the same
    :class:`Memory` a read of the projection returns once that state is committed."""
    return Memory(
        memory_id=m.memory_id, namespace=m.namespace, subject=m.subject, kind=m.kind,
        state=m.state, frozen=m.frozen, version=m.version, revision=m.revision, text=text,
        content_hash=content_hash, tags=list(m.tags), metadata=dict(m.metadata),
        source=m.source, owner=m.owner, visibility=m.visibility, priority=m.priority,
        ttl_seconds=m.ttl_seconds, retention_days=m.retention_days,
        expires_at=None if m.expires_at is None else _time(m.expires_at),
        parents=[Parent(memory_id, version) for memory_id, version in m.parents],
        created_at=_time(m.created_at), updated_at=_time(m.updated_at),
        created_by=m.created_by, updated_by=m.updated_by, offset=m.updated_offset,
    )  # fmt: skip


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def get_memory(
    store: DuckStore,
    memory_id: str,
    version: int | None = None,
    as_of_offset: int | None = None,
) -> Memory | None:
    """The memory now; or the content of ``version``; or as it stood at ``as_of_offset``."""
    if as_of_offset is None:
        sql = _MEMORY_SQL.format(version="?" if version is not None else "m.version")
        params = [version, memory_id] if version is not None else [memory_id]
        rows = store.query(sql, params)
        if not rows:
            return None
        m = _memory(rows[0])
        if version is not None and version > m.version:
            return None
        if version is not None and version != m.version:
            m = _at_version(store, m, version)
        return m
    # As of an offset: the last transition of the memory at or before it.
    t = store.query(
        'SELECT "offset", state, frozen, version, revision, recorded_at FROM transitions '
        'WHERE memory_id = ? AND "offset" <= ? ORDER BY "offset" DESC LIMIT 1',
        [memory_id, as_of_offset],
    )
    if not t:
        return None
    tr = t[0]
    want = tr["version"] if version is None else version
    if want > tr["version"]:
        return None
    rows = store.query(_MEMORY_SQL.format(version="?"), [want, memory_id])
    if not rows:
        return None
    row = rows[0]
    actor = store.query('SELECT actor FROM audit WHERE "offset" = ?', [tr["offset"]])
    row.update(
        state=tr["state"],
        frozen=tr["frozen"],
        version=want,
        revision=tr["revision"],
        updated_at=tr["recorded_at"],
        updated_by=actor[0]["actor"] if actor else row["updated_by"],
        offset=tr["offset"],
    )
    m = _memory(row)
    return _at_version(store, m, want) if want != tr["version"] else m


def _at_version(store: DuckStore, m: Memory, version: int) -> Memory:
    """``m`` (its content already that of ``version``) with the version's own offset, time
    and author: where and when that content was written, not the memory's last change."""
    rows = store.query(
        'SELECT "offset", recorded_at, actor FROM versions WHERE memory_id = ? AND version = ?',
        [m.memory_id, version],
    )
    if not rows:
        return msgspec.structs.replace(m, version=version)
    v = rows[0]
    return msgspec.structs.replace(
        m, version=version, offset=v["offset"], updated_at=v["recorded_at"], updated_by=v["actor"]
    )


def list_memories(
    store: DuckStore,
    *,
    namespace: str | None,
    states: list[str],
    tags: list[str],
    after: int | None,
    limit: int,
) -> MemoryPage:
    """Memories at their current version in creation order (``created_offset``), matching
    every given filter; ``after`` is the cursor (a creation offset, exclusive)."""
    where, params = ["list_contains(?, m.state)"], [states]
    if namespace is not None:
        where.append("m.namespace = ?")
        params.append(namespace)
    if tags:
        where.append("list_has_all(v.tags, ?)")
        params.append(tags)
    if after is not None:
        where.append("m.created_offset > ?")
        params.append(after)
    sql = (
        f"SELECT {view_select(CURRENT_EXPRESSIONS)}, m.created_offset AS created_offset "
        f"FROM {CURRENT_SOURCE} WHERE {' AND '.join(where)} "
        "ORDER BY m.created_offset LIMIT ?"
    )
    params.append(limit + 1)
    rows = store.query(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    cursors = [r.pop("created_offset") for r in rows]
    return MemoryPage(
        memories=[_memory(r) for r in rows], next_after=cursors[-1] if more and rows else None
    )


def _version(row: dict[str, Any]) -> Version:
    row["tags"] = list(row["tags"] or [])
    row["metadata"] = _meta(row["metadata"])
    row["parents"] = _parents(row["parents"])
    row["rolled_back_to"] = row.pop("copy_from")
    return Version(**row)


def history(
    store: DuckStore,
    memory_id: str,
    include_parents: bool = True,
    as_of_offset: int | None = None,
) -> list[Version]:
    """Every version of a memory, oldest first; with ``include_parents`` also the versions
    of the memories it was merged from (recursively), each up to the version merged."""
    limit = as_of_offset if as_of_offset is not None else 2**62

    def chain(mid: str, upto: int | None) -> list[Version]:
        rows = store.query(
            "SELECT memory_id, version, op, text, content_hash, tags, metadata, parents, "
            'copy_from, event_id, "offset", recorded_at, actor FROM versions '
            'WHERE memory_id = ? AND version <= ? AND "offset" <= ? ORDER BY version',
            [mid, upto if upto is not None else 2**31 - 1, limit],
        )
        return [_version(r) for r in rows]

    return follow_chains(memory_id, include_parents, chain)


def follow_chains(
    memory_id: str,
    include_parents: bool,
    chain: Callable[[str, int | None], list[Version]],
) -> list[Version]:
    """The versions of ``memory_id`` (``chain(id, None)``, oldest first) and, with
    ``include_parents``, those of every memory merged into it, recursively, each up to
    the version merged (``chain(id, version)``), sorted by offset."""
    out: list[Version] = []
    todo: list[tuple[str, int | None]] = [(memory_id, None)]
    seen: set[str] = set()
    while todo:
        mid, upto = todo.pop(0)
        if mid in seen:
            continue
        seen.add(mid)
        versions = chain(mid, upto)
        out.extend(versions)
        if include_parents:
            for v in versions:
                for p in v.parents:
                    if p.memory_id != mid:
                        todo.append((p.memory_id, p.version))
    if include_parents:
        out.sort(key=lambda v: (v.offset, v.memory_id))
    return out


_AUDIT_FIELDS = (
    '"offset", event_id, type, namespace, memory_id, subject, actor, context, occurred_at, '
    "recorded_at, expected_version, correlation_id, causation_id, status, code, reason, why, "
    "version, revision, state, chain_hash, tombstone, scope"
)


def audit(
    store: DuckStore,
    *,
    namespace: str | None = None,
    memory_id: str | None = None,
    actor: str | None = None,
    type: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int | None = None,
    as_of_offset: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Audit entries in log order matching every given filter; ``after`` is the cursor."""
    if limit < 1 or limit > 10_000:
        raise ValueError(f"limit must be between 1 and 10000, not {limit}")
    where, params = [], []
    for col, val in (
        ("namespace", namespace),
        ("memory_id", memory_id),
        ("actor", actor),
        ("type", type),
        ("status", status),
    ):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    for op, val in ((">=", since), ("<=", until)):
        if val is not None:
            if val.tzinfo is None:
                raise ValueError("since/until must carry a timezone")
            where.append(f"recorded_at {op} ?")
            params.append(val)
    if after is not None:
        where.append('"offset" > ?')
        params.append(after)
    if as_of_offset is not None:
        where.append('"offset" <= ?')
        params.append(as_of_offset)
    sql = f"SELECT {_AUDIT_FIELDS} FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += ' ORDER BY "offset" LIMIT ?'
    params.append(limit + 1)
    rows = store.query(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    # What each accepted erase erased: the memories it moved to ``erased`` (its transitions).
    erases = [r["offset"] for r in rows if r["type"] == "erase" and r["status"] == "accepted"]
    erased: dict[int, list[str]] = {}
    if erases:
        for offset, mid in (
            store.cursor()
            .execute(
                'SELECT "offset", memory_id FROM transitions WHERE list_contains(?, "offset") '
                "AND state = 'erased' ORDER BY \"offset\", rowid",
                (erases,),
            )
            .fetchall()
        ):
            erased.setdefault(offset, []).append(mid)
    entries = []
    for r in rows:
        r["context"] = _meta(r["context"])
        entries.append(AuditEntry(**r, erased=erased.get(r["offset"], [])))
    return AuditPage(entries=entries, next_after=entries[-1].offset if more else None)
