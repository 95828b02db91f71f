"""Screening on ingest: a namespace's sensitive-content policy, applied to the events that
carry content (create, revise, merge) before they are appended.

The policy of a namespace (``memstream policy set NS --sensitive ...``, the most specific
one that selects it) says what to do when :mod:`.sensitive` finds something in a memory's
text, tags or metadata:

- ``allow`` (and no policy): nothing is scanned;
- ``tag``: the memory is appended as written, with a tag ``sensitive:<type>`` per type
  found and what was found (types, counts, field paths and spans; never the values) in its
  metadata under :data:`FINDINGS_KEY`;
- ``redact``: as ``tag``, and every value found is replaced by a placeholder
  (``<EMAIL_1>``) in the text, tags and metadata that the projections, the indexes and
  every read see; the original goes in the event's sealed ``original`` field, which only
  a principal with a ``reveal`` grant reads back (``MemoryStore.reveal``);
- ``reject``: the event is refused (:class:`~memstream.errors.SensitiveContent`, naming
  the types and fields found) and nothing is appended.

The findings travel in the event itself, so the audit trail and every replay keep them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from memstream.errors import SensitiveContent
from memstream.projections.policy import PolicyState
from memstream.schemas.events import Create, Event, Merge, Original, Revise

from .sensitive import SensitiveScanner

__all__ = ["FINDINGS_KEY", "TAG_PREFIX", "screen"]

#: The metadata key under which a screened memory carries what was found.
FINDINGS_KEY = "memstream.sensitive"
#: Tags added per type found (``sensitive:email``).
TAG_PREFIX = "sensitive:"
_SCREENED = (Create, Revise, Merge)


#: a memory's current (tags, metadata), for a revise that keeps them (None: unknown)
Current = Callable[[str], tuple[list[str], dict[str, Any]] | None]


def screen(
    events: Sequence[Event],
    policy: PolicyState,
    scanner: Callable[[], SensitiveScanner],
    current: Current = lambda memory_id: None,
) -> list[Event]:
    """``events`` with their namespace's sensitive-content policy applied (see the module
    docstring); the scanner is loaded only if some namespace asks for it. A revise that
    keeps its memory's tags or metadata (``None``) is screened with the current ones."""
    out = []
    for i, e in enumerate(events):
        p = e.payload
        if not isinstance(p, _SCREENED):
            out.append(e)
            continue
        rule = policy.namespace_rule(e.namespace)
        action = rule.sensitive if rule is not None else "allow"
        if action == "allow":
            out.append(e)
            continue
        kept = current(e.memory_id) if (p.tags is None or p.metadata is None) else None
        out.append(_screened(e, p, action, scanner(), kept, i if len(events) > 1 else None))
    return out


def _screened(
    e: Event,
    p: Any,
    action: str,
    scanner: SensitiveScanner,
    kept: tuple[list[str], dict[str, Any]] | None,
    index: int | None,
) -> Event:
    tags = list(p.tags if p.tags is not None else (kept[0] if kept else ()))
    metadata = dict(p.metadata if p.metadata is not None else (kept[1] if kept else {}))
    metadata.pop(FINDINGS_KEY, None)  # only the screening writes it
    findings = scanner.scan_memory(p.text, tags, metadata)
    if not findings:
        return e
    found = findings.to_dict()
    if action == "reject":
        raise SensitiveContent(
            f"memory {e.memory_id}: namespace {e.namespace} refuses sensitive content, and "
            f"{', '.join(found['types'])} was found in {', '.join(sorted(found['fields']))}; "
            "remove it, or ask an admin for another policy (memstream policy set)",
            findings=found,
            index=index,
        )
    changes: dict[str, Any] = {}
    if action == "redact":
        redacted = scanner.redact_memory(p.text, tags, metadata, findings)
        changes["original"] = Original(text=p.text, tags=list(tags), metadata=dict(metadata))
        changes["text"] = redacted.text
        tags, metadata = list(redacted.tags), dict(redacted.metadata)
        found["action"] = "redact"
    else:
        found["action"] = "tag"
    for t in found["types"]:
        if f"{TAG_PREFIX}{t}" not in tags:
            tags.append(f"{TAG_PREFIX}{t}")
    metadata[FINDINGS_KEY] = found
    changes["tags"] = tags
    changes["metadata"] = metadata
    return msgspec.structs.replace(e, payload=msgspec.structs.replace(p, **changes))
