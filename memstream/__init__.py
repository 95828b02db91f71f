"""memstream: an event-sourced memory store for LLM agents.

Every memory operation is an immutable, encrypted event on a log; projections (DuckDB,
vector and keyword indexes) are rebuilt from it. Start with :class:`MemoryStore`.
"""

from memstream.errors import LogTampered, MalformedEvent, Rejected
from memstream.schemas.events import Context, Event
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, AuditPage, Memory, Version
from memstream.sdk import AsyncMemoryStore, MemoryStore, new_id

__version__ = "0.1.0"

__all__ = [
    "AsyncMemoryStore",
    "AuditEntry",
    "AuditPage",
    "Context",
    "Event",
    "LogTampered",
    "MalformedEvent",
    "Memory",
    "MemoryStore",
    "Outcome",
    "Rejected",
    "Version",
    "new_id",
]
