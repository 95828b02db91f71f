"""The operations every SDK shares: one method per memory operation, each building one
validated event and handing it to the backend's ``append``.

:class:`Operations` is the base of the embedded store (:class:`memstream.MemoryStore`),
the HTTP client (:class:`memstream.client.HttpMemoryStore`) and the Kafka SDK
(:class:`memstream.kafka.KafkaMemoryStore`); their reads share :class:`~memstream.queries.Reads`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import uuid_utils

from memstream.errors import MalformedEvent, UnknownMemory, rejection
from memstream.schemas import events as ev
from memstream.schemas.codec import EventCodec, error_path, surrogate_error
from memstream.schemas.memcube import Outcome
from memstream.validation import event_value

__all__ = ["Operations", "new_id", "raise_rejections"]


def new_id() -> str:
    """A UUIDv7 (time-ordered) as a string: event ids, and memory ids when none is given."""
    return str(uuid_utils.uuid7())


def _context(context: ev.Context | dict[str, Any] | None) -> ev.Context:
    if context is None:
        return ev.Context()
    if isinstance(context, ev.Context):
        return context
    try:
        return msgspec.convert(context, ev.Context)
    except msgspec.ValidationError as e:
        raise MalformedEvent(str(e), field="$.context") from None
    except UnicodeEncodeError:
        raise surrogate_error(context, "$.context") from None


class Operations(abc.ABC):
    """The write API, shared by every backend: each method builds one event."""

    actor: str
    registry: ev.Registry
    codec: EventCodec

    @abc.abstractmethod
    def append(self, events: Sequence[Any], *, raise_on_reject: bool = False) -> list[Outcome]:
        """Append a batch of events; one outcome per event."""

    @abc.abstractmethod
    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        """(namespace, subject) of an existing memory, or None."""

    # -- building events ------------------------------------------------------------------

    def event(
        self,
        type: str,
        namespace: str,
        memory_id: str,
        payload: dict[str, Any] | ev.Payload,
        *,
        actor: str | None = None,
        context: ev.Context | dict[str, Any] | None = None,
        expected_version: int | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        subject: str | None = None,
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> ev.Event:
        """Build and validate one event: a malformed one raises :class:`MalformedEvent`
        naming the field, here rather than at ``append``.

        The envelope and the payload are checked against the same constraints as wire
        input. An event built here and handed to ``append`` unchanged is not validated a
        second time (see :meth:`MemoryStore.append`).
        """
        etype = self.registry.get(type) if isinstance(type, str) else None
        if etype is None:
            raise MalformedEvent(
                f"unknown event type {type!r:.100}; known types: "
                f"{', '.join(self.registry.names())}",
                field="$.type",
            )
        if not isinstance(payload, ev.Payload):
            if isinstance(payload, dict):
                event_value(payload, "$.payload")
            try:
                payload = msgspec.convert(payload, etype.payload)
            except msgspec.ValidationError as e:
                msg = str(e).replace("`$", "`$.payload")
                raise MalformedEvent(msg, field=error_path(e, "$.payload") or "$.payload") from None
            except UnicodeEncodeError:
                raise surrogate_error(payload, "$.payload") from None
        else:
            payload = self.codec.check_payload(etype, payload)
        envelope = self.codec.check_envelope(
            {
                "event_id": new_id() if event_id is None else event_id,
                "type": type,
                "schema_version": etype.version,
                "namespace": namespace,
                "memory_id": memory_id,
                "occurred_at": datetime.now(UTC) if occurred_at is None else occurred_at,
                "actor": self.actor if actor is None else actor,
                "context": _context(context),
                "expected_version": expected_version,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "subject": subject,
            }
        )
        event = ev.Event(
            event_id=envelope.event_id,
            type=type,
            schema_version=etype.version,
            namespace=envelope.namespace,
            memory_id=envelope.memory_id,
            occurred_at=envelope.occurred_at,
            actor=envelope.actor,
            context=envelope.context,
            expected_version=envelope.expected_version,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            subject=envelope.subject,
            payload=payload,
        )
        try:
            self._built(event)
        except UnicodeEncodeError:
            raise surrogate_error(event) from None
        return event

    def _built(self, event: ev.Event) -> None:  # noqa: B027  (a hook; most backends ignore it)
        """Called with every event :meth:`event` built and validated."""

    def _submit(self, event: ev.Event) -> Outcome:
        return self.append([event], raise_on_reject=True)[0]

    def _on(
        self, type: str, memory_id: str, payload: dict[str, Any], namespace: str | None, kw: dict
    ) -> Outcome:
        """An operation on an existing memory: namespace and subject default to the memory's."""
        if not isinstance(memory_id, str):
            raise MalformedEvent(
                f"memory_id must be a string, not {memory_id.__class__.__name__}",
                field="$.memory_id",
            )
        event_value(memory_id, "$.memory_id")
        placed = self._placement(memory_id)
        if placed is None and namespace is None:
            raise UnknownMemory(
                {
                    "type": type,
                    "code": "unknown_memory",
                    "memory_id": memory_id,
                    "offset": None,
                    "reason": f"memory {memory_id} does not exist; pass namespace= to record "
                    "the attempt in the audit anyway",
                }
            )
        ns = namespace if namespace is not None else placed[0]  # type: ignore[index]
        if placed is not None and kw.get("subject") is None and placed[1] != ns:
            kw["subject"] = placed[1]
        return self._submit(self.event(type, ns, memory_id, payload, **kw))

    # -- one method per operation ---------------------------------------------------------------

    def create(
        self,
        namespace: str,
        text: str,
        *,
        memory_id: str | None = None,
        kind: str = "plaintext",
        tags: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        owner: str | None = None,
        visibility: str = "private",
        priority: int = 0,
        ttl_seconds: int | None = None,
        retention_days: int | None = None,
        expires_at: datetime | str | None = None,
        vector: Sequence[float] | None = None,
        **kw: Any,
    ) -> Outcome:
        """Create a memory. ``subject=`` names whose data it is (default: the namespace).

        ``ttl_seconds`` (after creation) and ``expires_at`` (an aware time) say when the
        memory expires, the earlier of the two; ``retention_days`` when it is erased after
        it expired (docs/governance.md, TTL and retention)."""
        payload = dict(
            text=text, kind=kind, tags=_listed(tags), metadata={} if metadata is None else metadata,
            source=source, owner=owner, visibility=visibility, priority=priority,
            ttl_seconds=ttl_seconds, retention_days=retention_days,
            expires_at=_rfc3339(expires_at, "$.payload.expires_at"), vector=_listed(vector),
        )  # fmt: skip
        mid = new_id() if memory_id is None else memory_id
        return self._submit(self.event("create", namespace, mid, payload, **kw))

    def revise(
        self,
        memory_id: str,
        text: str,
        *,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        vector: Sequence[float] | None = None,
        namespace: str | None = None,
        **kw: Any,
    ) -> Outcome:
        """A new version of the content; ``expected_version=`` guards against lost updates."""
        payload = dict(
            text=text,
            tags=_listed(tags),
            metadata=metadata,
            reason=reason,
            vector=_listed(vector),
        )
        return self._on("revise", memory_id, payload, namespace, kw)

    def merge(
        self,
        namespace: str,
        sources: Sequence[str],
        text: str,
        *,
        memory_id: str | None = None,
        kind: str = "plaintext",
        tags: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        vector: Sequence[float] | None = None,
        **kw: Any,
    ) -> Outcome:
        """Fuse ``sources`` into a new memory; the sources become ``merged``."""
        payload = dict(
            sources=_listed(sources), text=text, kind=kind, tags=_listed(tags),
            metadata={} if metadata is None else metadata, reason=reason, vector=_listed(vector),
        )  # fmt: skip
        mid = new_id() if memory_id is None else memory_id
        return self._submit(self.event("merge", namespace, mid, payload, **kw))

    def rollback(
        self, memory_id: str, to_version: int, *, reason: str | None = None,
        namespace: str | None = None, **kw: Any,
    ) -> Outcome:  # fmt: skip
        """Make the content of ``to_version`` current again, as a new version."""
        payload = {"to_version": to_version, "reason": reason}
        return self._on("rollback", memory_id, payload, namespace, kw)

    def activate(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Mark a memory hot (it gets a KV-cache artifact)."""
        return self._on("activate", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def archive(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Move a memory to cold storage (out of default search; restorable)."""
        return self._on("archive", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def restore(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Bring an archived memory back to ``active``."""
        return self._on("restore", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def expire(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Take a memory out of every index (kept for audit)."""
        return self._on("expire", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def freeze(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Legal hold: nothing but ``unfreeze`` changes the memory."""
        return self._on("freeze", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def unfreeze(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Lift a legal hold."""
        return self._on("unfreeze", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def erase(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Crypto-shred **this memory** and no other: its data keys are destroyed, so its
        content (every version, its tags, metadata and source) is unreadable in every copy
        of the log, for good, and dropped from every projection. ``outcome.erased`` lists
        it. To erase everything of a person or tenant, :meth:`erase_subject`. The reason
        stays readable in the audit: keep personal data out of it.

        Refused (:class:`~memstream.errors.SealedBySubject`) for a memory with content
        written before per-memory keys, which only :meth:`erase_subject` can shred."""
        payload = {"scope": "memory", "reason": reason}
        return self._on("erase", memory_id, payload, kw.pop("namespace", None), kw)

    def erase_subject(
        self,
        subject: str,
        *,
        namespace: str | None = None,
        reason: str | None = None,
        **kw: Any,
    ) -> Outcome:
        """Crypto-shred **every memory of** ``subject`` (whose data it is: the namespace,
        unless memories were created with another ``subject=``): the subject's keys are
        destroyed, and with them every memory's data keys. ``outcome.erased`` lists the
        memories erased. Refused while any of them is frozen, or when the subject has no
        memory (:class:`~memstream.errors.UnknownSubject`).

        ``namespace`` is where the erase is logged (default: the subject itself); on Kafka,
        name the namespace the subject's memories live in (its partition decides the erase).
        The event's ``memory_id`` names no memory: it is the event's own id."""
        event_id = kw.pop("event_id", None) or new_id()
        payload = {"scope": "subject", "reason": reason}
        event = self.event(
            "erase", namespace or subject, event_id, payload,
            subject=subject, event_id=event_id, **kw,
        )  # fmt: skip
        return self._submit(event)

    def artifact_built(
        self, memory_id: str, *, artifact_id: str, artifact_kind: str, model: str, path: str,
        checksum: str, size_bytes: int = 0, status: str = "ready",
        source_version: int | None = None, detail: str | None = None, **kw: Any,
    ) -> Outcome:  # fmt: skip
        """A builder reports a KV cache or LoRA adapter built for a memory."""
        payload = dict(
            artifact_id=artifact_id, artifact_kind=artifact_kind, model=model, path=path,
            checksum=checksum, size_bytes=size_bytes, status=status,
            source_version=source_version, detail=detail,
        )  # fmt: skip
        return self._on("artifact_built", memory_id, payload, kw.pop("namespace", None), kw)


def _rfc3339(value: Any, field: str) -> Any:
    """An aware ``datetime`` as RFC 3339 text (what the payload carries); anything else as it
    is, for the event's validation to judge."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise MalformedEvent(
            f"a time without a timezone ({value.isoformat()}); give it one, e.g. "
            "datetime(..., tzinfo=UTC), or an RFC 3339 string ending in Z or +HH:MM",
            field=field,
        )
    return value.isoformat()


def _listed(values: Any) -> Any:
    """A sequence as a list (a numpy array too); anything else as it is, for the event's
    validation to refuse with the field's name (a lone string is not split into letters)."""
    if isinstance(values, list | tuple):
        return list(values)
    if hasattr(values, "tolist") and not isinstance(values, str | bytes):
        return values.tolist()
    return values


def raise_rejections(outcomes: list[Outcome], raise_on_reject: bool) -> list[Outcome]:
    if raise_on_reject:
        for o in outcomes:
            if not o.accepted:
                raise rejection(o)
    return outcomes
