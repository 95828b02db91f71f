"""Decided outcomes read back from the core projection, for readers of the past.

The core projection decides every event once and stores the verdict with its offset:
``audit`` holds the verdict of every event, ``transitions`` the post-state (lifecycle
state, frozen flag, version, revision) of every memory an accepted event changed, and
``memories``/``versions`` what those post-states do not repeat (descriptive and
governance metadata, fixed at creation; tags and metadata, fixed per version). So the
:class:`~memstream.schemas.memcube.Outcome` that was handed to the live processors can be
built again, the same, for any offset the projection holds: a subscriber that starts
from offset 0 a year later gets every verdict, and a processor that catches up from its
own checkpoint sees what it would have seen live.

Two fields are not kept and come back empty: ``destroy_key`` of an erase carries the keys
it destroys only while the decider acts on it, and the content of an erased
memory's versions (tags, metadata) is gone, which is what the erase asked for.

Pure reads: one query per range of offsets, no writes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec
from memstream.schemas.memcube import MemState, Outcome

from .duck import DuckStore

__all__ = ["read_outcomes"]

_VERDICTS = """
SELECT "offset", epoch_us(recorded_at), event_id, type, namespace, memory_id, status, code,
       reason, version, revision, state
FROM audit WHERE "offset" > ? AND "offset" <= ? ORDER BY "offset"
"""

# The post-state of every memory each accepted event changed, in the order the decider
# listed them (the event's own memory first: ``transitions`` keeps the decider's order
# within an offset, by row position, which ``rowid`` follows).
_CHANGES = """
SELECT t."offset", t.memory_id, t.namespace, m.subject, m.kind, t.state, t.frozen,
       t.version, t.revision, v.tags, v.metadata, m.source, m.owner, m.visibility,
       m.priority, m.ttl_seconds, m.retention_days, epoch_us(m.expires_at), m.parents,
       epoch_us(m.created_at),
       epoch_us(t.recorded_at), m.created_by, a.actor, m.created_offset
FROM transitions t
JOIN memories m ON m.memory_id = t.memory_id
JOIN audit a ON a."offset" = t."offset"
LEFT JOIN versions v ON v.memory_id = t.memory_id AND v.version = t.version
WHERE t."offset" > ? AND t."offset" <= ?
ORDER BY t."offset", t.rowid
"""

_metadata = msgspec.json.Decoder(dict[str, Any])


def _state(row: tuple[Any, ...]) -> MemState:
    (
        offset, memory_id, namespace, subject, kind, state, frozen, version, revision, tags,
        metadata, source, owner, visibility, priority, ttl, retention, expires, parents,
        created_at, updated_at, created_by, updated_by, created_offset,
    ) = row  # fmt: skip
    return MemState(
        memory_id=memory_id, namespace=namespace, subject=subject, kind=kind, state=state,
        frozen=frozen, version=version, revision=revision, tags=tuple(tags or ()),
        metadata=_metadata.decode(metadata) if metadata else {}, source=source, owner=owner,
        visibility=visibility, priority=priority, ttl_seconds=ttl, retention_days=retention,
        expires_at=expires, parents=tuple((p["memory_id"], p["version"]) for p in parents or ()),
        created_at=created_at, updated_at=updated_at, created_by=created_by,
        updated_by=updated_by, created_offset=created_offset, updated_offset=offset,
    )  # fmt: skip


def read_outcomes(duck: DuckStore, after: int, upto: int) -> list[Outcome]:
    """The outcomes of the events with ``after < offset <= upto``, in log order.

    ``upto`` must not exceed what the projection holds (``duck.offset()``): an offset it
    does not hold yet has no outcome to read.
    """
    with duck.reading() as cur:
        changed = cur.execute(_CHANGES, [after, upto]).fetchall()
        verdicts = cur.execute(_VERDICTS, [after, upto]).fetchall()
    changes: dict[int, list[MemState]] = defaultdict(list)
    for row in changed:
        changes[row[0]].append(_state(row))
    out = []
    for row in verdicts:
        offset, recorded_at, event_id, type_, namespace, memory_id = row[:6]
        status, code, reason, version, revision, state = row[6:]
        changed = tuple(changes.get(offset, ()))
        erased = (
            tuple(m.memory_id for m in changed) if type_ == "erase" and status == "accepted" else ()
        )
        out.append(
            Outcome(
                offset=offset,
                recorded_at=recorded_at,
                event_id=event_id,
                type=type_,
                namespace=namespace,
                memory_id=memory_id,
                status=status,
                code=code,
                reason=reason,
                version=version,
                revision=revision,
                state=state,
                changes=changed,
                erased=erased,
            )  # fmt: skip
        )
    return out
