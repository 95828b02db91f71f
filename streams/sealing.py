"""Turning events into stored records and back: sealing (AES-256-GCM) and opening.

The payload of every event is encrypted under the data key of the memory it is about (the
envelope's ``memory_id``; for a merge, the new memory), wrapped by its subject's key,
before it reaches any log, with the event id and key id as associated data (a ciphertext
cannot be moved to another record). Clear fields (see
:class:`memstream.schemas.events.Payload`) stay readable. Opening a record whose key was
destroyed yields a *tombstone*: the envelope and the clear fields, with ``payload=None``.
Records sealed directly under a subject key (written before per-memory keys) open the same
way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from typing import Any

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Event, Payload
from memstream.schemas.keyid import KeyId
from memstream.schemas.record import Sealed, StoredEvent

from .keystore import KeyDestroyed, KeyStore

#: the most ciphers kept (one per key: with a key per memory, a bound)
_CIPHERS = 65_536

_record_encoder = msgspec.json.Encoder()
_payload_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(StoredEvent)


class _KeyOnly(msgspec.Struct, gc=False):
    kid: str


class _SealedOnly(msgspec.Struct, gc=False):
    """The one field of a record that names its key (decoding skips everything else)."""

    sealed: _KeyOnly | None = None


_kid_decoder = msgspec.json.Decoder(_SealedOnly)


class RecordCorrupt(ValueError):
    """A stored record that cannot be decoded or authenticated (tampering or damage)."""


class Sealer:
    """Seals events into record bytes and opens record bytes into events."""

    def __init__(self, keys: KeyStore, codec: EventCodec):
        self.keys = keys
        self.codec = codec
        self._aead: OrderedDict[str, AESGCM] = OrderedDict()
        #: the key of each cached cipher, and the content-hash key derived from it (made
        #: when first needed: opening never needs one)
        self._keys: dict[str, bytes] = {}
        self._hash_keys: dict[str, bytes] = {}

    # -- keys ---------------------------------------------------------------------------

    def _cipher(self, kid: str, key: bytes) -> AESGCM:
        c = self._aead.get(kid)
        if c is None:
            if len(self._aead) >= _CIPHERS:  # the oldest out (an OrderedDict: O(1))
                oldest, _ = self._aead.popitem(last=False)
                self._keys.pop(oldest, None)
                self._hash_keys.pop(oldest, None)
            c = self._aead[kid] = AESGCM(key)
            self._keys[kid] = key
        return c

    def forget(self, kids: list[str]) -> None:
        """Drop cached ciphers of destroyed keys (of a subject key: also of the data keys it
        wraps)."""
        subjects = set()
        for k in kids:
            self._aead.pop(k, None)
            self._keys.pop(k, None)
            self._hash_keys.pop(k, None)
            if not KeyId.parse(k).is_data_key:
                subjects.add(k + "/")
        if subjects:
            wrapped = [k for k in self._aead if k.startswith(tuple(subjects))]
            for k in wrapped:
                self._aead.pop(k, None)
                self._keys.pop(k, None)
                self._hash_keys.pop(k, None)

    def content_hash(self, kid: str, text: str) -> str:
        """Keyed hash of a text under a memory's data key: equal texts of one memory match
        (another memory's never do), erased ones can't be confirmed by anyone."""
        hkey = self._hash_keys.get(kid)
        if hkey is None:
            hkey = hmac.new(self._keys[kid], b"memstream/content-hash", hashlib.sha256).digest()
            self._hash_keys[kid] = hkey
        return hashlib.blake2b(text.encode(), key=hkey, digest_size=16).hexdigest()

    @staticmethod
    def needs_key(event: Event) -> bool:
        """Whether ``event`` has a payload part to seal (not only clear fields)."""
        p = event.payload
        return p is not None and len(p.CLEAR) < len(p.__struct_fields__)

    @classmethod
    def data_keys_needed(cls, events: list[Event]) -> set[tuple[str, str]]:
        """The (subject, memory id) data keys sealing ``events`` takes."""
        return {(e.effective_subject, e.memory_id) for e in events if cls.needs_key(e)}

    # -- sealing --------------------------------------------------------------------------

    def seal(self, event: Event) -> tuple[bytes, str | None, str | None]:
        """Record bytes of ``event``, its key id and its content hash."""
        return self.seal_all([event])[0]

    def seal_all(self, events: list[Event]) -> list[tuple[bytes, str | None, str | None]]:
        """:meth:`seal` of each event. The memories' data keys the batch needs and lacks (and
        their subjects' keys) are created first, all in one durable commit of the key store."""
        parts = list(zip(events, map(_split, events), strict=True))
        self.keys.ensure_data_keys({(e.effective_subject, e.memory_id) for e, (p, _) in parts if p})
        return [self._seal(e, plain, clear) for e, (plain, clear) in parts]

    def _seal(
        self, event: Event, plain: bytes, clear: dict[str, Any]
    ) -> tuple[bytes, str | None, str | None]:
        sealed = None
        kid = None
        content_hash = None
        if plain:
            kid, key = self.keys.current_data_key(event.effective_subject, event.memory_id)
            cipher = self._cipher(kid, key)
            nonce = os.urandom(12)
            ct = cipher.encrypt(nonce, plain, _aad(event.event_id, kid))
            sealed = Sealed(kid=kid, nonce=nonce, ct=ct)
            text = getattr(event.payload, "text", None)
            if text is not None:
                content_hash = self.content_hash(kid, text)
        stored = StoredEvent(
            event_id=event.event_id,
            type=event.type,
            schema_version=event.schema_version,
            namespace=event.namespace,
            memory_id=event.memory_id,
            occurred_at=event.occurred_at,
            actor=event.actor,
            context=event.context,
            expected_version=event.expected_version,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            subject=event.subject,
            content_hash=content_hash,
            clear=clear,
            sealed=sealed,
        )
        return _record_encoder.encode(stored), kid, content_hash

    # -- opening ---------------------------------------------------------------------------

    def preload(self, records: list[bytes]) -> None:
        """Fetch the data keys that opening ``records`` takes and that are not at hand, in a
        few queries of the key store (:meth:`KeyStore.prefetch`) instead of one per record.
        Only a cost: a record whose key is destroyed still opens as a tombstone, and one
        that cannot be decoded still fails in :meth:`open`."""
        kids = set()
        aead = self._aead
        for data in records:
            try:
                sealed = _kid_decoder.decode(data).sealed
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
            if sealed is not None and sealed.kid not in aead:
                kids.add(sealed.kid)
        if kids:
            self.keys.prefetch(kids)

    def open(self, data: bytes) -> tuple[Event, StoredEvent]:
        """Decode record bytes into an event; a destroyed key gives a tombstone."""
        try:
            stored = _record_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise RecordCorrupt(f"stored record cannot be decoded: {e}") from None
        etype = self.codec.registry.get(stored.type)
        if etype is None:
            raise RecordCorrupt(f"stored record has unknown type {stored.type!r}")
        payload: Payload | None
        clear = stored.clear or None
        if stored.sealed is None:
            payload = self.codec.decode_payload(
                etype, b"{}", stored.schema_version, extra=stored.clear
            )
        else:
            kid = stored.sealed.kid
            try:
                cipher = self._aead.get(kid) or self._cipher(kid, self.keys.get(kid))
            except KeyDestroyed:
                payload = None
                clear = dict(stored.clear)
                if stored.schema_version < etype.version:
                    clear = etype.upcast(clear, stored.schema_version)
            else:
                try:
                    plain = cipher.decrypt(
                        stored.sealed.nonce, stored.sealed.ct, _aad(stored.event_id, kid)
                    )
                except Exception as e:  # cryptography raises InvalidTag
                    raise RecordCorrupt(
                        f"record {stored.event_id}: payload fails authentication ({type(e).__name__})"
                    ) from None
                payload = self.codec.decode_payload(
                    etype, plain, stored.schema_version, extra=stored.clear or None
                )
        event = Event(
            event_id=stored.event_id,
            type=stored.type,
            schema_version=etype.version,
            namespace=stored.namespace,
            memory_id=stored.memory_id,
            occurred_at=stored.occurred_at,
            actor=stored.actor,
            context=stored.context,
            expected_version=stored.expected_version,
            correlation_id=stored.correlation_id,
            causation_id=stored.causation_id,
            subject=stored.subject,
            payload=payload,
            clear=clear if payload is None else None,
        )
        return event, stored


def _split(event: Event) -> tuple[bytes, dict[str, Any]]:
    """An event's payload as the plaintext to seal (``b""``: nothing) and its clear fields."""
    payload = event.payload
    if payload is None:
        raise ValueError(f"event {event.event_id} has no payload to seal")
    clear_names = payload.CLEAR
    if not clear_names:
        return _payload_encoder.encode(payload), {}
    body = msgspec.to_builtins(payload)
    clear = {name: body.pop(name) for name in clear_names if name in body}
    return (_payload_encoder.encode(body) if body else b""), clear


def _aad(event_id: str, kid: str) -> bytes:
    return f"{event_id}|{kid}".encode()
