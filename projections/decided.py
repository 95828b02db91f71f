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

Pure reads: a few queries per range of offsets, no writes.
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
       reason, version, revision, state, actor
FROM audit WHERE "offset" > ? AND "offset" <= ? ORDER BY "offset"
"""

# The post-state of every memory each accepted event changed, in the order the decider
# listed them (the event's own memory first: ``transitions`` keeps the decider's order
# within an offset, by row position, which ``rowid`` follows).
_TRANSITIONS = """
SELECT "offset", memory_id, namespace, state, frozen, version, revision, epoch_us(recorded_at)
FROM transitions WHERE "offset" > ? AND "offset" <= ? ORDER BY "offset", rowid
"""

# What those post-states do not repeat, read per table for the range's memories and joined
# here. Joined in one query, DuckDB built hash tables of the whole of ``memories`` and
# ``versions`` for every range: reading a large log back in slices cost its size for each
# slice (160 ms per 5,000 events in a log of 1,000,000; 100 ms this way).
_MEMORIES = """
SELECT memory_id, subject, kind, source, owner, visibility, priority, ttl_seconds,
       retention_days, epoch_us(expires_at), parents, epoch_us(created_at), created_by,
       created_offset
FROM memories WHERE memory_id = ANY(?)
"""

# The versions the range's events made, by their offset (rows are appended in log order,
# so the scan skips what lies outside the range); any other by its memory.
_VERSIONS_MADE = """
SELECT memory_id, version, tags, metadata FROM versions WHERE "offset" > ? AND "offset" <= ?
"""
_VERSIONS_OF = "SELECT memory_id, version, tags, metadata FROM versions WHERE memory_id = ANY(?)"

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
        verdicts = cur.execute(_VERDICTS, [after, upto]).fetchall()
        moved = cur.execute(_TRANSITIONS, [after, upto]).fetchall()
        ids = list({row[1] for row in moved})
        memories = {row[0]: row for row in cur.execute(_MEMORIES, [ids]).fetchall()} if ids else {}
        versions = {
            (m, v): (tags, metadata)
            for m, v, tags, metadata in cur.execute(_VERSIONS_MADE, [after, upto]).fetchall()
        }
        older = {(row[1], row[5]) for row in moved} - versions.keys()
        if older:
            wanted = list({m for m, _ in older})
            for m, v, tags, metadata in cur.execute(_VERSIONS_OF, [wanted]).fetchall():
                if (m, v) in older:
                    versions[(m, v)] = (tags, metadata)
    actors = {row[0]: row[12] for row in verdicts}
    changes: dict[int, list[MemState]] = defaultdict(list)
    for offset, memory_id, namespace, state, frozen, version, revision, updated_at in moved:
        m = memories.get(memory_id)
        if m is None:  # no memory row, nothing to describe (the inner join it was)
            continue
        tags, metadata = versions.get((memory_id, version), (None, None))
        changes[offset].append(
            _state(
                (offset, memory_id, namespace, m[1], m[2], state, frozen, version, revision,
                 tags, metadata, m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11],
                 updated_at, m[12], actors.get(offset), m[13])
            )
        )  # fmt: skip
    out = []
    for row in verdicts:
        offset, recorded_at, event_id, type_, namespace, memory_id = row[:6]
        status, code, reason, version, revision, state = row[6:12]
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
