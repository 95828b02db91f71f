"""What travels on the runtime's topics, and the headers that describe it.

- requests: the wire JSON of an event (as the JSON Schema in ``schemas/jsonschema``
  describes it), or an array of events of one namespace, keyed by that namespace.
  Headers are optional for producers.
- events: the stored record (:class:`memstream.schemas.record.StoredEvent`: envelope in
  clear, payload sealed) — the same bytes the embedded log stores — or an
  :class:`Incident` when a request could not become an event. Headers carry the record
  kind, type, schema version, event id and the ``recorded_at`` the sequencer stamped (the
  test broker ignores ``LogAppendTime``; the shard keeps it monotonic per partition).
- outcomes: :class:`memstream.schemas.memcube.Outcome` as JSON (without its change list),
  keyed by event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from memstream.schemas.memcube import Outcome

H_KIND = "memstream-record"
H_TYPE = "memstream-type"
H_VERSION = "memstream-schema-version"
H_EVENT_ID = "memstream-event-id"
H_RECORDED_AT = "memstream-recorded-at"
H_COUNT = "memstream-count"  # events in a request record that holds a JSON array

KIND_EVENT = b"event"
KIND_INCIDENT = b"incident"


@dataclass
class KRecord:
    """One Kafka record as a driver hands it to the sequencer or a shard."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0

    @classmethod
    def of(cls, msg: object) -> KRecord:
        """From an aiokafka ``ConsumerRecord`` or a Faust ``Message`` (same attributes)."""
        headers = getattr(msg, "headers", None) or ()
        if isinstance(headers, dict):
            pairs = list(headers.items())
        else:
            pairs = list(headers)
        return cls(
            offset=msg.offset,  # type: ignore[attr-defined]
            key=msg.key,  # type: ignore[attr-defined]
            value=msg.value,  # type: ignore[attr-defined]
            headers={k: (v or b"") for k, v in pairs},
            timestamp_ms=int(getattr(msg, "timestamp", 0) or 0),
        )


class Incident(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A record that could not be projected as an event, and why; audited, nothing else.

    Written by the sequencer for a malformed or misrouted request (the request's bytes never
    reach the log: only their SHA-256), and derived by a shard for such a record found on the
    events topic itself. ``incident_id`` is stable for the same source record, so a second
    delivery is recognised as a duplicate.
    """

    incident: Literal["malformed", "misrouted"]
    incident_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None
    raw_sha256: str
    error: str
    namespace: str | None = None


_incident_encoder = msgspec.json.Encoder()
_incident_decoder = msgspec.json.Decoder(Incident)


def incident(
    kind: Literal["malformed", "misrouted"],
    topic: str,
    partition: int,
    rec: KRecord,
    error: str,
    namespace: str | None = None,
) -> Incident:
    raw = rec.value or b""
    ident = hashlib.sha256(f"{topic}/{partition}/{rec.offset}".encode()).hexdigest()[:32]
    # the incident id has the shape of an event id, so the audit and dedupe treat it alike
    iid = f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-{ident[20:32]}"
    return Incident(
        incident=kind,
        incident_id=iid,
        source_topic=topic,
        source_partition=partition,
        source_offset=rec.offset,
        key=rec.key.decode("utf-8", "replace")[:200] if rec.key is not None else None,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        error=error[:2000],
        namespace=namespace,
    )


def encode_incident(i: Incident) -> bytes:
    return _incident_encoder.encode(i)


def decode_incident(data: bytes) -> Incident:
    return _incident_decoder.decode(data)


# -- outcomes ------------------------------------------------------------------------------

_outcome_encoder = msgspec.json.Encoder()
_outcome_decoder = msgspec.json.Decoder(Outcome)
_outcomes_decoder = msgspec.json.Decoder(list[Outcome])

#: Outcomes per record on the outcomes topic (a JSON array of about 250 bytes each).
OUTCOMES_PER_RECORD = 500


def encode_outcomes(outcomes: Sequence[Outcome]) -> list[bytes]:
    """Record values for ``outcomes``: JSON arrays of at most :data:`OUTCOMES_PER_RECORD`,
    each outcome without its change list (post-states are read from the projections).

    A batch's verdicts travel in a few records rather than one per event: a produce costs
    tens of microseconds of the worker's interpreter whatever its size."""
    bare = [msgspec.structs.replace(o, changes=(), destroy_key=None) for o in outcomes]
    return [
        _outcome_encoder.encode(bare[i : i + OUTCOMES_PER_RECORD])
        for i in range(0, len(bare), OUTCOMES_PER_RECORD)
    ]


def decode_outcomes(data: bytes) -> list[Outcome]:
    """The outcomes of one record (an array; a single object is read as one outcome)."""
    if data[:1] == b"[":
        return _outcomes_decoder.decode(data)
    return [_outcome_decoder.decode(data)]
