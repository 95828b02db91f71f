"""The errors a memstream user can meet, each naming the memory, the field and the fix.

- :class:`MalformedEvent`: the input is not a well-formed event; nothing was appended.
- :class:`Rejected` and its subclasses: the event was appended and decided, and the
  lifecycle refused it; ``outcome`` holds the verdict as the audit shows it.
- :class:`BadRequest`, :class:`SearchDisabled`, :class:`PartitionUnavailable` and
  :class:`Unsupported`: a read or an operation the service cannot answer as asked. A
  parameter of the wrong type or out of range is a :class:`BadRequest` naming it
  (:mod:`memstream.validation` checks them once, at the service's edge).
- :class:`LogTampered`: the log breaks its hash chain (the store was not opened, or a
  replay not made); :class:`RecordCorrupt`: a record that cannot be opened, by offset.
- :class:`NotCaughtUp`: a read's ``min_offset`` (or a ``flush`` given a timeout) was not
  reached in time; it names what lags (the projection, the search indexes) and where it
  stands. :class:`ProjectorFailed`, :class:`ProcessorFailed`: the projection or a
  processor stopped on an error (reopen the store). :class:`StoreLocked`,
  :class:`StoreReadOnly`: another process holds the store; a read-only store refused a
  write.

Every one of them is importable from ``memstream`` itself.
"""

from __future__ import annotations

from memstream.schemas.codec import EventTooLarge, MalformedEvent
from memstream.schemas.memcube import Outcome
from memstream.streams.embedded import (
    LogTampered,
    NotCaughtUp,
    ProjectorFailed,
    StoreLocked,
    StoreReadOnly,
)
from memstream.streams.runner import ProcessorFailed
from memstream.streams.sealing import RecordCorrupt

__all__ = [
    "Forbidden",
    "UnknownSubscription",
    "SubscriptionClosed",
    "TermsViolated",
    "SensitiveContent",
    "NamesUnavailable",
    "Unauthenticated",
    "MalformedEvent",
    "EventTooLarge",
    "Rejected",
    "UnknownMemory",
    "AlreadyExists",
    "InvalidTransition",
    "MemoryFrozen",
    "MemoryErased",
    "VersionConflict",
    "CrossNamespace",
    "SubjectMismatch",
    "KeyErased",
    "InvalidMerge",
    "InvalidRollback",
    "LogTampered",
    "SealedBySubject",
    "UnknownSubject",
    "NotCaughtUp",
    "ProjectorFailed",
    "ProcessorFailed",
    "RecordCorrupt",
    "StoreLocked",
    "StoreReadOnly",
    "BadRequest",
    "SearchDisabled",
    "PartitionUnavailable",
    "Unsupported",
    "rejection",
]


class Rejected(Exception):
    """A well-formed event the lifecycle refused. It is in the log and in the audit."""

    code = "rejected"

    def __init__(self, outcome: Outcome | dict):
        self.outcome = outcome
        get = outcome.get if isinstance(outcome, dict) else lambda k: getattr(outcome, k)
        self.reason = get("reason")
        self.memory_id = get("memory_id")
        self.offset = get("offset")
        super().__init__(f"{get('type')} rejected ({get('code')}): {self.reason}")


class UnknownMemory(Rejected):
    code = "unknown_memory"


class AlreadyExists(Rejected):
    code = "already_exists"


class InvalidTransition(Rejected):
    code = "invalid_transition"


class MemoryFrozen(Rejected):
    code = "frozen"


class MemoryErased(Rejected):
    code = "erased"


class VersionConflict(Rejected):
    code = "version_conflict"


class CrossNamespace(Rejected):
    code = "cross_namespace"


class SubjectMismatch(Rejected):
    code = "subject_mismatch"


class KeyErased(Rejected):
    code = "key_erased"


class InvalidMerge(Rejected):
    code = "invalid_merge"


class InvalidRollback(Rejected):
    code = "invalid_rollback"


class SealedBySubject(Rejected):
    """A memory erase of a memory with content sealed under its subject's key (records
    written before per-memory keys): only erasing the subject can shred it."""

    code = "sealed_by_subject"


class UnknownSubject(Rejected):
    """A subject erase of a subject that has no memory (in this log or partition)."""

    code = "unknown_subject"


_BY_CODE = {
    c.code: c
    for c in (
        UnknownMemory,
        AlreadyExists,
        InvalidTransition,
        MemoryFrozen,
        MemoryErased,
        VersionConflict,
        CrossNamespace,
        SubjectMismatch,
        KeyErased,
        InvalidMerge,
        InvalidRollback,
        SealedBySubject,
        UnknownSubject,
    )
}


def rejection(outcome: Outcome | dict) -> Rejected:
    """The typed exception for a rejected outcome."""
    code = outcome.get("code") if isinstance(outcome, dict) else outcome.code
    return _BY_CODE.get(code or "", Rejected)(outcome)


class BadRequest(ValueError):
    """A request parameter is invalid; ``field`` names it (``query.as_of``, ``body.dest``)."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class SearchDisabled(RuntimeError):
    """The store (or worker) keeps no search indexes."""


class PartitionUnavailable(RuntimeError):
    """A partition has no owner right now, or is still catching up (Kafka runtime).

    ``error`` is ``unavailable`` (no owner, or ownership moving) or ``catching_up`` (with
    the partition's ``offset`` and ``lag``); a client may retry."""

    def __init__(
        self,
        message: str,
        *,
        partition: int | None = None,
        error: str = "unavailable",
        offset: int | None = None,
        lag: int | None = None,
    ):
        self.partition, self.error, self.offset, self.lag = partition, error, offset, lag
        super().__init__(message)

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.error, "partition": self.partition}
        if self.error == "catching_up":
            body.update(offset=self.offset, lag=self.lag)
        return {**body, "message": str(self)}


class SensitiveContent(ValueError):
    """A memory refused by its namespace's sensitive-content policy (``reject``): nothing
    was appended. ``findings``: the types, counts and field paths found (never the values);
    ``index``: the event's position in a batch (HTTP 422 ``sensitive``)."""

    def __init__(self, message: str, *, findings: dict | None = None, index: int | None = None):
        self.findings, self.index = findings or {}, index
        super().__init__(message)


class NamesUnavailable(RuntimeError):
    """Person names were required of the sensitive-content scanner, but the spaCy model
    that finds them is not installed (the message names the package)."""


class Forbidden(PermissionError):
    """The caller may not do this: ``missing`` names the grant it lacks (HTTP 403)."""

    def __init__(self, message: str, *, missing: str | None = None):
        self.missing = missing
        super().__init__(message)


class Unauthenticated(PermissionError):
    """No credentials, or credentials that do not authenticate (HTTP 401)."""


class Unsupported(RuntimeError):
    """An operation this backend does not offer (a backup of a Kafka deployment's worker)."""


class UnknownSubscription(LookupError):
    """No subscription (or publication) of that name (HTTP 404 ``not_found``)."""

    def __init__(self, message: str, *, name: str):
        self.name = name
        super().__init__(message)


class SubscriptionClosed(RuntimeError):
    """The subscription being consumed was deleted (or created again), or the store
    closed: open it again (HTTP 410 ``closed``)."""


class TermsViolated(PermissionError):
    """A publication's terms refuse this: it expired (``term="expires_at"``), was
    withdrawn (``withdrawn``), the subscriber is not among those it is published to
    (``to``), or its deliveries per period are used up (``max_deliveries``, with
    ``retry_after`` seconds). HTTP 403, or 429 with ``Retry-After`` for the quota."""

    def __init__(
        self, message: str, *, publication: str, term: str, retry_after: float | None = None
    ):
        self.publication, self.term, self.retry_after = publication, term, retry_after
        super().__init__(message)
