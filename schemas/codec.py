"""Decoding and validating events from the wire (JSON from the SDK, HTTP, CLI or Kafka).

Decoding is two-phase, so that old events keep working: the envelope is decoded with the
payload left as raw bytes (``msgspec.Raw``); the type and ``schema_version`` then pick the
payload class, the payload is upcast if it is older than the current version, and only
then decoded into its Struct. Anything wrong raises :class:`MalformedEvent`, whose message
names the field (``$.payload.text``), the event's position in a batch, and the fix.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .events import Context, Envelope, Event, EventType, Payload, Registry

#: Default limit on the size of one encoded event (the configurable "oversize" rule).
DEFAULT_MAX_EVENT_BYTES = 1_048_576


class MalformedEvent(ValueError):
    """An event that is not well-formed; it is never appended.

    ``field`` is a JSON path such as ``$.payload.text`` (or ``None`` for the whole
    document) and ``index`` the position of the event in a batch (``None`` for a single
    event).
    """

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None):
        self.detail = message
        self.field = field
        self.index = index
        where = f"event #{index}: " if index is not None else ""
        at = f" (at {field})" if field else ""
        super().__init__(where + message + at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": "malformed",
            "message": str(self),
            "field": self.field,
            "index": self.index,
        }


class EventTooLarge(MalformedEvent):
    """A payload over the codec's size limit (``limit`` bytes): HTTP answers 413."""

    def __init__(
        self, message: str, *, limit: int, field: str | None = "$.payload", index: int | None = None
    ):
        self.limit = limit
        super().__init__(message, field=field, index=index)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "error": "too_large", "limit": self.limit}


LONE_SURROGATE = "contains a lone surrogate (U+D800..U+DFFF), which cannot be stored as UTF-8"


def lone_surrogate(value: Any, path: str = "$", depth: int = 0) -> str | None:
    """The JSON path of the first string in ``value`` (a str, dict, list, tuple or Struct)
    that holds a lone surrogate, which UTF-8 cannot encode; None if there is none."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    if depth > 64:
        return None
    if isinstance(value, msgspec.Struct):
        value = {f: getattr(value, f) for f in value.__struct_fields__}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and lone_surrogate(k, path) is not None:
                return path
            found = lone_surrogate(v, f"{path}.{k}", depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = lone_surrogate(v, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
    return None


def surrogate_error(value: Any, path: str = "$", index: int | None = None) -> MalformedEvent:
    """The :class:`MalformedEvent` for a value UTF-8 cannot encode, naming where."""
    where = lone_surrogate(value, path) or path
    return MalformedEvent(f"the text {LONE_SURROGATE}", field=where, index=index)


class _WireEvent(Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The envelope as it arrives, with the payload still undecoded."""

    payload: msgspec.Raw = msgspec.Raw(b"{}")


_one = msgspec.json.Decoder(_WireEvent)
_many = msgspec.json.Decoder(list[_WireEvent])
_json_any = msgspec.json.Decoder()


def _path_of(err: msgspec.ValidationError, prefix: str = "$") -> str | None:
    """The JSON path msgspec reports, re-rooted at ``prefix``; for a missing field, the path
    of the field itself (msgspec reports the object that lacks it)."""
    text = str(err)
    marker = " - at `"
    path = text.split(marker, 1)[1].rstrip("`") if marker in text else "$"
    missing = re.match(r"Object missing required field `([^`]+)`", text)
    if missing:
        path = f"{path}.{missing.group(1)}"
    elif marker not in text:
        return None
    return prefix + path[1:] if prefix != "$" else path


#: The JSON path a msgspec validation error points at (for callers outside this module).
error_path = _path_of


def _message_of(err: Exception) -> str:
    return str(err).split(" - at `", 1)[0]


class EventCodec:
    """Validates and decodes events against a :class:`Registry` and a size limit."""

    def __init__(self, registry: Registry, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES):
        self.registry = registry
        self.max_event_bytes = max_event_bytes
        self._payload_decoders: dict[str, msgspec.json.Decoder[Any]] = {
            name: msgspec.json.Decoder(t.payload) for name, t in registry.types.items()
        }
        self._encoder = msgspec.json.Encoder()

    # -- decoding ------------------------------------------------------------------

    def decode(self, data: bytes | str) -> list[Event]:
        """Decode one event (a JSON object) or a batch (a JSON array of objects)."""
        if isinstance(data, str):
            try:
                raw = data.encode()
            except UnicodeEncodeError:
                raise MalformedEvent(f"the JSON text {LONE_SURROGATE}") from None
        elif isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
        else:
            raise MalformedEvent(f"expected JSON as bytes or str, not {type(data).__name__}")
        stripped = raw.lstrip()
        if not stripped:
            raise MalformedEvent("empty body: expected a JSON event object or an array of them")
        try:
            if stripped[:1] == b"[":
                wires = _many.decode(raw)
                if not wires:
                    raise MalformedEvent("empty batch: send at least one event")
                batch = True
            else:
                wires = [_one.decode(raw)]
                batch = False
        except msgspec.ValidationError as e:
            raise self._locate(raw, e) from None
        except msgspec.DecodeError as e:
            raise MalformedEvent(f"not valid JSON ({e})") from None
        return [self._finish(w, index=i if batch else None) for i, w in enumerate(wires)]

    def _locate(self, raw: bytes, err: msgspec.ValidationError) -> MalformedEvent:
        """Name the failing event's index in a batch (msgspec reports ``$[3].actor``)."""
        path = _path_of(err)
        index = None
        if path and path.startswith("$["):
            close = path.index("]")
            index = int(path[2:close])
            path = "$" + path[close + 1 :]
        return MalformedEvent(_message_of(err), field=path, index=index)

    def _finish(self, w: _WireEvent, index: int | None) -> Event:
        etype = self.registry.get(w.type)
        if etype is None:
            raise MalformedEvent(
                f"unknown event type {w.type!r}; known types: {', '.join(self.registry.names())}",
                field="$.type",
                index=index,
            )
        if w.schema_version > etype.version:
            raise MalformedEvent(
                f"schema_version {w.schema_version} of {w.type!r} is newer than this store "
                f"understands (at most {etype.version}); upgrade memstream",
                field="$.schema_version",
                index=index,
            )
        self.check_size(len(w.payload), index=index)
        payload = self.decode_payload(etype, bytes(w.payload), w.schema_version, index=index)
        return Event(
            event_id=w.event_id,
            type=w.type,
            schema_version=etype.version,
            namespace=w.namespace,
            memory_id=w.memory_id,
            occurred_at=w.occurred_at,
            actor=w.actor,
            context=w.context,
            expected_version=w.expected_version,
            correlation_id=w.correlation_id,
            causation_id=w.causation_id,
            subject=w.subject,
            payload=payload,
        )

    def check_size(self, size: int, *, index: int | None = None) -> None:
        """Refuse a payload of ``size`` encoded bytes over the limit (the oversize rule)."""
        if size > self.max_event_bytes:
            raise EventTooLarge(
                f"payload is {size} bytes, over the limit of {self.max_event_bytes} bytes "
                "(configure max_event_bytes to raise it)",
                limit=self.max_event_bytes,
                index=index,
            )

    def decode_payload(
        self,
        etype: EventType,
        raw: bytes,
        schema_version: int,
        *,
        index: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Payload:
        """Decode a payload of ``schema_version`` into the current payload class.

        ``extra`` are clear fields stored beside a sealed payload; they are merged in first.
        """
        try:
            if schema_version == etype.version and not extra:
                return self._payload_decoders[etype.name].decode(raw)
            data = _json_any.decode(raw) if raw else {}
            if not isinstance(data, dict):
                raise MalformedEvent(
                    "payload must be a JSON object", field="$.payload", index=index
                )
            if extra:
                data.update(extra)
            if schema_version != etype.version:
                data = etype.upcast(data, schema_version)
            return msgspec.convert(data, etype.payload)
        except msgspec.ValidationError as e:
            raise MalformedEvent(
                _message_of(e), field=_path_of(e, "$.payload") or "$.payload", index=index
            ) from None
        except msgspec.DecodeError as e:
            raise MalformedEvent(
                f"payload is not valid JSON ({e})", field="$.payload", index=index
            ) from None

    # -- validating events built in Python -------------------------------------------

    def validate(self, events: list[Event]) -> list[Event]:
        """Validate events built in Python (msgspec does not validate on construction).

        Each event is encoded and decoded through the same path as wire input, so the SDK
        refuses exactly what HTTP and Kafka refuse.
        """
        out = []
        for i, ev in enumerate(events):
            if not isinstance(ev, Event):
                raise MalformedEvent(f"expected an Event, got {type(ev).__name__}", index=i)
            try:
                wire = _one.decode(self._encoder.encode(_strip(ev)))
            except msgspec.ValidationError as e:
                raise MalformedEvent(_message_of(e), field=_path_of(e), index=i) from None
            except UnicodeEncodeError:
                raise surrogate_error(_strip(ev), index=i) from None
            except (TypeError, ValueError, OverflowError) as e:
                raise MalformedEvent(f"cannot be encoded as JSON ({e})", index=i) from None
            out.append(self._finish(wire, index=i if len(events) > 1 else None))
        return out

    def check_envelope(self, fields: dict[str, Any]) -> Envelope:
        """Validate envelope fields given as Python values (what the SDK builds an event from).

        One ``msgspec.convert`` against :class:`Envelope`: the same constraints as wire input
        (patterns, lengths, a timezone on ``occurred_at``, the call context's fields), at a
        fraction of the cost of an encode and decode. A :class:`Context` instance is checked
        field by field too (msgspec passes Struct instances through unchecked).
        """
        ctx = fields.get("context")
        if isinstance(ctx, Context):
            fields = dict(fields, context=msgspec.structs.asdict(ctx))
        try:
            return msgspec.convert(fields, Envelope)
        except msgspec.ValidationError as e:
            raise MalformedEvent(_message_of(e), field=_path_of(e)) from None
        except UnicodeEncodeError:
            raise surrogate_error(fields) from None

    def check_payload(self, etype: EventType, payload: Payload) -> Payload:
        """Validate a payload instance built in Python, through the wire path (msgspec does
        not validate on construction); returns the decoded copy."""
        if not isinstance(payload, etype.payload):
            raise MalformedEvent(
                f"event type {etype.name!r} takes a {etype.payload.__name__} payload, "
                f"not {type(payload).__name__}",
                field="$.payload",
            )
        try:
            raw = self._encoder.encode(payload)
        except UnicodeEncodeError:
            raise surrogate_error(payload, "$.payload") from None
        except (TypeError, ValueError, OverflowError) as e:
            raise MalformedEvent(f"cannot be encoded as JSON ({e})", field="$.payload") from None
        return self.decode_payload(etype, raw, etype.version)

    def encode(self, event: Event) -> bytes:
        """The wire JSON of an event (what a producer sends)."""
        return self._encoder.encode(_strip(event))


def _strip(ev: Event) -> dict[str, Any]:
    """An event as a wire dict (without the read-side ``clear`` field)."""
    d = msgspec.structs.asdict(ev)
    d.pop("clear", None)
    if d["payload"] is None:
        d.pop("payload")
    return d
