"""The sequencer: a request record becomes sealed event records, or an incident.

It runs once per request partition, in order, and writes into the events partition of the
same number. Deciding is not its job (the shard decides, in log order); it only makes sure
that what reaches the log is a well-formed event on the right partition, sealed:

- not decodable, an unknown type, a missing or mistyped field, a future schema version,
  oversize → an ``malformed`` incident (the request's bytes never reach the log);
- a record whose key is not on this partition (a producer with another partitioner), or
  whose namespace is not its key → a ``misrouted`` incident;
- otherwise each event is sealed under its memory's data key and stamped with ``recorded_at``.

The subjects' keys and the memories' data keys must be live locally before
:meth:`Sequencer.seal` runs (:meth:`Sequencer.subjects` and :meth:`Sequencer.data_keys`
list them; the worker ensures them through the keys topic).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from memstream.schemas.codec import EventCodec, MalformedEvent
from memstream.schemas.events import Event
from memstream.streams.sealing import Sealer

from .partitioning import partition_of
from .records import (
    H_EVENT_ID,
    H_KIND,
    H_RECORDED_AT,
    H_TYPE,
    H_VERSION,
    KIND_EVENT,
    KIND_INCIDENT,
    KRecord,
    encode_incident,
    incident,
)


@dataclass
class Sequenced:
    """A record for the events topic (same partition as its request)."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class Parsed:
    """A request decoded: its events, or the incident it becomes."""

    events: list[Event]
    incident: Sequenced | None = None


class Sequencer:
    def __init__(self, codec: EventCodec, sealer: Sealer, topic: str, partitions: int):
        self.codec = codec
        self.sealer = sealer
        self.topic = topic
        self.partitions = partitions

    def parse(self, partition: int, rec: KRecord) -> Parsed:
        """Validate one request record (no keys needed yet)."""
        if rec.key is None or partition_of(rec.key, self.partitions) != partition:
            why = (
                "the record has no key (the key must be the namespace)"
                if rec.key is None
                else f"key {rec.key.decode('utf-8', 'replace')!r} belongs to partition "
                f"{partition_of(rec.key, self.partitions)}, not {partition}: the producer "
                "must partition with murmur2 (librdkafka: partitioner=murmur2_random)"
            )
            return Parsed([], self._incident("misrouted", partition, rec, why))
        try:
            events = self.codec.decode(rec.value or b"")
        except MalformedEvent as e:
            return Parsed([], self._incident("malformed", partition, rec, str(e)))
        key = rec.key.decode("utf-8", "replace")
        wrong = [e.namespace for e in events if e.namespace != key]
        if wrong:
            return Parsed(
                [],
                self._incident(
                    "misrouted",
                    partition,
                    rec,
                    f"the record's key is {key!r} but it holds events of namespace "
                    f"{wrong[0]!r}: key every request by its namespace",
                    namespace=wrong[0],
                ),
            )
        return Parsed(events)

    @staticmethod
    def subjects(parsed: list[Parsed]) -> set[str]:
        return {e.effective_subject for p in parsed for e in p.events}

    @staticmethod
    def data_keys(parsed: list[Parsed]) -> set[tuple[str, str]]:
        """The (subject, memory id) data keys sealing ``parsed`` takes."""
        return Sealer.data_keys_needed([e for p in parsed for e in p.events])

    def seal(self, parsed: Parsed, now_us: int | None = None) -> list[Sequenced]:
        """The events records of one parsed request (keys must be live)."""
        if parsed.incident is not None:
            return [parsed.incident]
        stamp = str(now_us if now_us is not None else time.time_ns() // 1000).encode()
        out = []
        for ev in parsed.events:
            data, _kid, _hash = self.sealer.seal(ev)
            out.append(
                Sequenced(
                    key=ev.namespace.encode(),
                    value=data,
                    headers=[
                        (H_KIND, KIND_EVENT),
                        (H_TYPE, ev.type.encode()),
                        (H_VERSION, str(ev.schema_version).encode()),
                        (H_EVENT_ID, ev.event_id.encode()),
                        (H_RECORDED_AT, stamp),
                    ],
                )
            )
        return out

    def _incident(
        self, kind, partition: int, rec: KRecord, error: str, namespace: str | None = None
    ) -> Sequenced:
        i = incident(kind, self.topic, partition, rec, error, namespace)
        return Sequenced(
            key=rec.key,
            value=encode_incident(i),
            headers=[
                (H_KIND, KIND_INCIDENT),
                (H_EVENT_ID, i.incident_id.encode()),
                (H_RECORDED_AT, str(time.time_ns() // 1000).encode()),
            ],
        )
