"""What the log stores: a readable envelope, the clear payload fields, and the sealed rest.

A stored record is JSON, so any client of the log (a Kafka consumer in another language,
an auditor with ``jq``) can read who did what to which memory, and when, without any key:
only the payload's content is ciphertext. The chain hash covers these exact bytes, so an
upcast on read or the destruction of a key never breaks it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .events import AwareDatetime, Context

#: Version of the stored-record layout (not of any event type).
RECORD_FORMAT = 1


# ``gc=False``: one of each per record read or written, holding only strings, bytes and
# JSON data, so never part of a reference cycle (see ``events``).


class Sealed(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A payload encrypted with AES-256-GCM under the data key ``kid`` (``subject#generation``).

    ``nonce`` and ``ct`` (ciphertext with its tag) travel as base64 in JSON.
    """

    kid: str
    nonce: bytes
    ct: bytes


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """One record of the log, as bytes are laid down."""

    format: Annotated[int, msgspec.Meta(ge=1)] = RECORD_FORMAT
    event_id: str
    type: str
    schema_version: int
    namespace: str
    memory_id: str
    occurred_at: AwareDatetime
    actor: str
    context: Context = Context()
    expected_version: int | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    subject: str | None = None
    #: Keyed hash of the content (per subject key), so equal texts are recognised without
    #: revealing them; it cannot be recomputed once the subject's key is destroyed.
    content_hash: str | None = None
    clear: dict[str, Any] = {}
    sealed: Sealed | None = None


class LogRecord(msgspec.Struct, frozen=True, gc=False):
    """A record as read back from a log: where it is, when it was recorded, its bytes."""

    offset: int
    recorded_at: int  # microseconds since the epoch, UTC; never decreases along the log
    data: bytes
    chain_hash: bytes
