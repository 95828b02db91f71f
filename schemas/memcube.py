"""The MemCube (a memory's metadata as the store holds it), outcomes and logged events.

- :class:`MemState` is the decision-relevant MemCube of one memory: descriptive metadata
  (id, namespace, kind, tags, source, created_at), governance metadata (subject, owner,
  visibility, priority, ttl, retention, expiry time, frozen) and its lifecycle position
  (state, version, revision). Content lives in the version chain, usage counters beside it.
- :class:`Logged` is an event at its place in a log (offset, time, chain hash, key id).
- :class:`Outcome` is the verdict on one logged event, decided once, in log order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from .events import Event

Status = Literal["accepted", "rejected"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(us: int) -> str:
    """A log time (integer microseconds since the epoch, UTC) as RFC 3339, written the way
    msgspec writes every other time of the API: ``2026-11-22T10:15:00.123456Z``."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def micros(value: str | int) -> int:
    """The inverse of :func:`rfc3339` (an integer passes through)."""
    if isinstance(value, int):
        return value
    when = datetime.fromisoformat(value)
    return (when - _EPOCH) // timedelta(microseconds=1)


# ``gc=False`` on the structs below: the decision state keeps one MemState per memory for
# the life of the store (millions after a large replay), and every full collection of the
# interpreter would walk all of them. None of them can be part of a reference cycle: they
# hold strings, numbers, tuples, events and JSON-decoded dicts, never an object that refers
# back to them, so reference counting alone frees them (see docs/benchmarks.md).


class MemState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    memory_id: str
    namespace: str
    subject: str
    kind: str
    state: str
    frozen: bool = False
    version: int
    revision: int
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    source: str | None = None
    owner: str | None = None
    visibility: str = "private"
    priority: int = 0
    ttl_seconds: int | None = None
    retention_days: int | None = None
    #: the create's ``expires_at`` (µs since the epoch, UTC), if it named one
    expires_at: int | None = None
    #: (memory_id, version) of the versions this memory's first version came from (merge).
    parents: tuple[tuple[str, int], ...] = ()
    created_at: int  # recorded_at (µs) of the event that created it
    updated_at: int
    created_by: str
    updated_by: str
    created_offset: int
    updated_offset: int


class Logged(msgspec.Struct, frozen=True, gc=False):
    """An event at its place in a log."""

    offset: int
    recorded_at: int  # µs since the epoch, UTC
    chain_hash: bytes
    event: Event
    key_id: str | None
    content_hash: str | None


class KeyDestruction(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The keys an accepted erase destroys; the drivers act on it (never sent to clients).

    - ``scope="memory"``: the data keys of memory ``memory_id`` of ``subject`` numbered up
      to ``generation`` (the highest the log used for it: keys made after the erase, for
      events refused as ``erased``, are not the erase's business, so a replay destroys
      exactly what the live store did);
    - ``scope="subject"``: every key of ``subject`` up to ``generation`` (the highest one
      the log used), and every data key those keys wrap.
    """

    scope: Literal["memory", "subject"]
    subject: str
    generation: int = 0
    memory_id: str | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The verdict on one event, plus where it landed.

    ``changes`` are the post-states of every memory the event changed (a merge changes its
    sources too, a subject erase every memory of the subject). ``destroy_key`` tells the
    drivers which keys an accepted erase destroys. ``erased`` lists the memories an accepted
    erase erased (one for scope ``memory``), for the caller to see.
    """

    offset: int
    recorded_at: int
    event_id: str
    type: str
    namespace: str
    memory_id: str
    status: Status
    code: str | None = None
    reason: str | None = None
    version: int | None = None
    revision: int | None = None
    state: str | None = None
    changes: tuple[MemState, ...] = ()
    destroy_key: KeyDestruction | None = None
    erased: tuple[str, ...] = ()
    duplicate: bool = False
    #: The log partition the event landed in: ``None`` in the embedded store (one log),
    #: the ``memstream.events`` partition (its namespace's) in the Kafka runtime.
    partition: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def recorded_time(self) -> datetime:
        """:attr:`recorded_at` (the log's clock, integer microseconds) as an aware datetime."""
        return _EPOCH + timedelta(microseconds=self.recorded_at)

    @classmethod
    def from_public(cls, body: dict[str, Any]) -> Outcome:
        """The outcome from its :meth:`public` form (what the HTTP API answers)."""
        body = {**body, "recorded_at": micros(body["recorded_at"])}
        return msgspec.convert(body, cls)

    def public(self) -> dict[str, Any]:
        """The outcome as callers see it (no internal change list); ``recorded_at`` as
        RFC 3339, like every other time of the API."""
        return {
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
            "event_id": self.event_id,
            "type": self.type,
            "namespace": self.namespace,
            "memory_id": self.memory_id,
            "version": self.version,
            "revision": self.revision,
            "state": self.state,
            "offset": self.offset,
            "recorded_at": rfc3339(self.recorded_at),
            "duplicate": self.duplicate,
            "partition": self.partition,
            "erased": list(self.erased),
        }
