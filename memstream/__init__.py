"""memstream: an event-sourced memory store for LLM agents.

Every memory operation is an immutable, encrypted event on a log; projections (DuckDB,
vector and keyword indexes) are rebuilt from it. Start with :class:`MemoryStore`.
"""

from memstream.errors import (
    AlreadyExists,
    BadRequest,
    CrossNamespace,
    EventTooLarge,
    Forbidden,
    InvalidMerge,
    InvalidRollback,
    InvalidTransition,
    KeyErased,
    LogTampered,
    MalformedEvent,
    MemoryErased,
    MemoryFrozen,
    NamesUnavailable,
    NotCaughtUp,
    PartitionUnavailable,
    ProcessorFailed,
    ProjectorFailed,
    RecordCorrupt,
    Rejected,
    SealedBySubject,
    SearchDisabled,
    SensitiveContent,
    StoreLocked,
    StoreReadOnly,
    SubjectMismatch,
    SubscriptionClosed,
    TermsViolated,
    Unauthenticated,
    UnknownMemory,
    UnknownSubject,
    UnknownSubscription,
    Unsupported,
    VersionConflict,
)
from memstream.pubsub.ready import ReadySet
from memstream.schemas.events import Context, Event
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, AuditPage, Delivery, Heartbeat, Memory, Version
from memstream.sdk import AsyncMemoryStore, MemoryStore, new_id

__version__ = "0.1.0"

__all__ = [
    "AsyncMemoryStore",
    "AuditEntry",
    "AuditPage",
    "Context",
    "Delivery",
    "Event",
    "Heartbeat",
    "Memory",
    "MemoryStore",
    "Outcome",
    "ReadySet",
    "Version",
    "new_id",
    # every error a user can meet (memstream.errors)
    "AlreadyExists",
    "BadRequest",
    "CrossNamespace",
    "EventTooLarge",
    "InvalidMerge",
    "InvalidRollback",
    "InvalidTransition",
    "KeyErased",
    "LogTampered",
    "MalformedEvent",
    "MemoryErased",
    "MemoryFrozen",
    "NotCaughtUp",
    "PartitionUnavailable",
    "ProcessorFailed",
    "ProjectorFailed",
    "RecordCorrupt",
    "Rejected",
    "SealedBySubject",
    "SearchDisabled",
    "StoreLocked",
    "StoreReadOnly",
    "Forbidden",
    "SensitiveContent",
    "NamesUnavailable",
    "Unauthenticated",
    "SubjectMismatch",
    "UnknownMemory",
    "UnknownSubject",
    "Unsupported",
    "VersionConflict",
    "SubscriptionClosed",
    "TermsViolated",
    "UnknownSubscription",
    # the Kafka runtime's (loaded on first use: they import its client)
    "NotWritten",
    "OutcomePending",
    # the HTTP client's (loaded on first use)
    "ServerUnavailable",
    "ServerError",
]


def __getattr__(name: str) -> object:
    if name in ("NotWritten", "OutcomePending"):
        from memstream.streams.kafka import producer

        return getattr(producer, name)
    if name in ("ServerUnavailable", "ServerError"):
        from memstream.client import transport

        return getattr(transport, name)
    raise AttributeError(f"module 'memstream' has no attribute {name!r}")
