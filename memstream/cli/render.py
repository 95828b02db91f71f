"""Tables for people (rich): memories, search hits, version chains, audit entries and
outcomes. ``--json`` output does not come through here (see ``common.print_json``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from rich.table import Table
from rich.text import Text

from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, Memory, SearchHit, Version

__all__ = [
    "audit_table",
    "hits_table",
    "history_table",
    "memories_table",
    "memory_table",
    "outcomes_table",
]


def _when(value: datetime | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1_000_000, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _clip(text: str | None, width: int = 80) -> Text:
    if text is None:
        return Text("(erased)", style="dim")
    return Text(text if len(text) <= width else text[: width - 1] + "…")


def memory_table(m: Memory) -> Table:
    """A memory as a two-column table (field, value)."""
    t = Table(title=f"memory {m.memory_id}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    state = m.state + (" (frozen)" if m.frozen else "")
    parents = ", ".join(f"{p.memory_id} v{p.version}" for p in m.parents)
    rows: list[tuple[str, str | Text]] = [
        ("namespace", m.namespace),
        ("subject", m.subject),
        ("kind", m.kind),
        ("state", state),
        ("version", f"{m.version} (revision {m.revision})"),
        ("text", _clip(m.text, 400)),
        ("tags", ", ".join(m.tags)),
        ("metadata", msgspec.json.encode(m.metadata).decode() if m.metadata else ""),
        ("parents", parents),
        ("source", m.source or ""),
        ("owner", m.owner or ""),
        ("visibility", m.visibility),
        ("created", f"{_when(m.created_at)} by {m.created_by}"),
        ("updated", f"{_when(m.updated_at)} by {m.updated_by}"),
        ("offset", str(m.offset)),
    ]
    if m.ttl_seconds is not None:
        rows.append(("ttl", f"{m.ttl_seconds} s"))
    if m.expires_at is not None:
        rows.append(("expires at", _when(m.expires_at)))
    if m.retention_days is not None:
        rows.append(("retention", f"{m.retention_days} days after expiry"))
    for k, v in rows:
        t.add_row(k, v if isinstance(v, Text) else Text(v))
    return t


def memories_table(memories: Sequence[Memory], title: str) -> Table:
    """Memories: id, namespace, state, version, tags, updated, text."""
    t = Table(title=title, title_justify="left")
    for col in ("memory", "namespace", "state", "v", "tags", "updated", "text"):
        t.add_column(col, no_wrap=col not in ("text", "tags"))
    for m in memories:
        t.add_row(
            Text(m.memory_id), Text(m.namespace), m.state + (" (frozen)" if m.frozen else ""),
            str(m.version), Text(", ".join(m.tags)), _when(m.updated_at), _clip(m.text, 70),
        )  # fmt: skip
    return t


def hits_table(hits: Sequence[SearchHit], title: str) -> Table:
    """Search hits: rank, scores, memory id, namespace, state, text."""
    t = Table(title=title, title_justify="left")
    for name in ("#", "score", "semantic", "keyword", "memory", "namespace", "state", "text"):
        t.add_column(
            name, justify="right" if name in ("#", "score", "semantic", "keyword") else "left"
        )
    for i, h in enumerate(hits, 1):
        m = h.memory
        t.add_row(
            str(i), f"{h.score:.4f}",
            "" if h.semantic_score is None else f"{h.semantic_score:.3f}",
            "" if h.keyword_score is None else f"{h.keyword_score:.2f}",
            m.memory_id, m.namespace, m.state, _clip(m.text, 70),
        )  # fmt: skip
    return t


def history_table(versions: Sequence[Version], title: str) -> Table:
    """A version chain: one row per version, merge parents named."""
    t = Table(title=title, title_justify="left")
    for col in ("memory", "v", "op", "actor", "recorded at", "offset", "from", "text"):
        t.add_column(col, no_wrap=col not in ("text", "from"))
    for v in versions:
        origin = ", ".join(f"{p.memory_id} v{p.version}" for p in v.parents)
        if v.rolled_back_to is not None:
            origin = f"content of v{v.rolled_back_to}"
        t.add_row(
            Text(v.memory_id),
            str(v.version),
            v.op,
            Text(v.actor),
            _when(v.recorded_at),
            str(v.offset),
            Text(origin),
            _clip(v.text),
        )
    return t


def audit_table(entries: Sequence[AuditEntry], title: str) -> Table:
    """Audit entries: who, what, when, why, and the outcome."""
    t = Table(title=title, title_justify="left")
    for col in ("offset", "recorded at", "actor", "operation", "memory", "outcome", "why"):
        t.add_column(col, no_wrap=col in ("offset", "recorded at", "operation"))
    for e in entries:
        if e.status == "accepted" and e.type == "erase":
            outcome = Text(f"accepted → erased {', '.join(e.erased) or 'nothing'}", style="green")
        elif e.status == "accepted":
            outcome = Text(f"accepted → {e.state} v{e.version}", style="green")
        else:
            outcome = Text(f"rejected ({e.code}): {e.reason}", style="red")
        t.add_row(
            str(e.offset),
            _when(e.recorded_at),
            Text(e.actor),
            f"{e.type} ({e.scope})" if e.scope else e.type,
            Text(e.memory_id),
            outcome,
            Text(e.why or ""),
        )
    return t


def outcomes_table(outcomes: Sequence[Outcome], title: str = "outcomes") -> Table:
    """Outcomes of appended events: where each landed and what the lifecycle decided."""
    t = Table(title=title, title_justify="left")
    for col in ("#", "type", "memory", "status", "version", "state", "offset", "reason"):
        t.add_column(col, no_wrap=col != "reason")
    for i, o in enumerate(outcomes):
        status = Text(o.status, style="green" if o.accepted else "red")
        if o.duplicate:
            status.append(" (duplicate)", style="dim")
        reason = f"{o.code}: {o.reason}" if o.code else ""
        t.add_row(
            str(i),
            o.type,
            Text(o.memory_id),
            status,
            "" if o.version is None else str(o.version),
            o.state or "",
            str(o.offset),
            Text(reason),
        )
    return t
