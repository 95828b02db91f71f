"""Events on the wire: validation errors name the field; schema versions and upcasting."""

from __future__ import annotations

import json
import uuid
from typing import ClassVar

import jsonschema
import pytest
from memstream.schemas import generate as js
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import EventType, Original, Payload, ShortText, default_registry

from memstream import MalformedEvent, MemoryStore

CODEC = EventCodec(default_registry(), max_event_bytes=10_000)


def wire(**over):
    ev = {
        "event_id": "01a204d8-ab18-77f4-8e51-38ae95b98781",
        "type": "create",
        "schema_version": 1,
        "namespace": "user/alice",
        "memory_id": "m1",
        "occurred_at": "2026-01-01T12:00:00+00:00",
        "actor": "agent-7",
        "payload": {"text": "Alice prefers window seats", "tags": ["travel"]},
    }
    for k, v in over.items():
        if v is ...:
            ev.pop(k)
        else:
            ev[k] = v
    return ev


def decode(ev) -> list:
    return CODEC.decode(json.dumps(ev).encode())


def test_an_events_id_bytes_are_its_uuids_bytes() -> None:
    """The log's 16-byte key is read from the id's hex, the same bytes ``uuid`` gives."""
    for eid in ("01a204d8-ab18-77f4-8e51-38ae95b98781", str(uuid.uuid4()), str(uuid.UUID(int=0))):
        (ev,) = decode(wire(event_id=eid))
        assert ev.id_bytes == uuid.UUID(eid).bytes


def test_valid_event_decodes_to_typed_payload():
    [e] = decode(wire())
    assert e.payload.text == "Alice prefers window seats"
    assert e.payload.tags == ["travel"]
    assert e.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty body"),
        (b"[]", None, "empty batch"),
        (json.dumps(wire(type="teleport")).encode(), "$.type", "unknown event type 'teleport'"),
        (json.dumps(wire(actor=...)).encode(), "$.actor", "missing required field `actor`"),
        (json.dumps(wire(payload={})).encode(), "$.payload.text", "missing required field"),
        (json.dumps(wire(memory_id="a/b")).encode(), "$.memory_id", "matching regex"),
        (json.dumps(wire(memory_id=42)).encode(), "$.memory_id", "Expected `str`, got `int`"),
        (json.dumps(wire(schema_version=9)).encode(), "$.schema_version", "newer than this store"),
        (json.dumps(wire(occurred_at="2026-01-01T12:00:00")).encode(), "$.occurred_at", "timezone"),
        (json.dumps(wire(colour="red")).encode(), None, "unknown field `colour`"),
        (json.dumps(wire(payload={"txt": "typo"})).encode(), None, "unknown field `txt`"),
        (json.dumps(wire(payload={"text": 3})).encode(), "$.payload.text", "Expected `str`"),
        (json.dumps(wire(namespace="bad namespace!")).encode(), "$.namespace", "matching regex"),
        (json.dumps(wire(payload={"text": "x" * 20_000})).encode(), "$.payload", "over the limit"),
    ],
)
def test_malformed_input_is_named(body, field, words):
    with pytest.raises(MalformedEvent) as info:
        CODEC.decode(body)
    assert words.lower() in str(info.value).lower()
    if field is not None:
        assert info.value.field == field
        assert field in str(info.value)


def test_batch_error_names_the_index():
    good, bad = wire(), wire(event_id="01a204d8-ab18-77f4-8e51-38ae95b98782", payload={})
    with pytest.raises(MalformedEvent) as info:
        CODEC.decode(json.dumps([good, bad]).encode())
    assert info.value.index == 1
    assert "text" in str(info.value) and str(info.value).startswith("event #1")


def test_merge_needs_two_sources():
    with pytest.raises(MalformedEvent) as info:
        decode(wire(type="merge", payload={"sources": ["a"], "text": "t"}))
    assert info.value.field == "$.payload.sources"


def test_malformed_batch_appends_nothing(store: MemoryStore):
    store.create("user/alice", "first")
    head = store.head
    with pytest.raises(MalformedEvent):
        store.publish_json(json.dumps([wire(memory_id="ok-1"), wire(payload={"text": 1})]))
    assert store.head == head


# -- JSON Schema ---------------------------------------------------------------------------


def test_committed_json_schema_matches_the_code():
    assert js.stale() == [], "run: python -m memstream.schemas.generate"


def test_json_schema_accepts_and_refuses_like_the_codec():
    schema = json.loads((js.SCHEMA_DIR / "events.json").read_text())
    jsonschema.validate(wire(), schema)
    jsonschema.validate([wire(), wire(type="archive", payload={"reason": "old"})], schema)
    for bad in (wire(colour="red"), wire(payload={"txt": "typo"}), wire(type="teleport")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(MalformedEvent):
            decode(bad)


def test_every_type_has_a_schema_file():
    names = {p.stem for p in js.SCHEMA_DIR.glob("*.json")}
    assert set(default_registry().names()) <= names


# -- schema versions and upcasting ---------------------------------------------------------


class ReviseV2(Payload, frozen=True, kw_only=True):
    """Revise, version 2: ``reason`` became ``rationale`` and gained a required ``source``."""

    TYPE: ClassVar[str] = "revise"
    VERSION: ClassVar[int] = 2

    text: str
    tags: list[str] | None = None
    metadata: dict | None = None
    rationale: ShortText | None = None
    source: str
    vector: list[float] | None = None
    original: Original | None = None


def revise_v1_to_v2(d: dict) -> dict:
    d = dict(d)
    d["rationale"] = d.pop("reason", None)
    d.setdefault("source", "v1")
    return d


def test_registry_refuses_a_version_without_upcasters():
    with pytest.raises(ValueError, match="no upcaster"):
        EventType("revise", ReviseV2)


def test_stored_v1_event_replays_under_v2(tmp_path):
    path = tmp_path / "s"
    with MemoryStore.open(path, durability="os") as s:
        mid = s.create("user/alice", "v1 text").memory_id
        s.revise(mid, "revised in v1", reason="typo fix")
        s.flush()
    v2 = default_registry().replace(EventType("revise", ReviseV2, {1: revise_v1_to_v2}))
    with MemoryStore.open(path, registry=v2, durability="os") as s:
        # The old event decodes into the new shape...
        rec = next(s.runtime.log.read(1, 2))[0]
        ev, stored = s.runtime.sealer.open(rec.data)
        assert stored.schema_version == 1 and ev.schema_version == 2
        assert isinstance(ev.payload, ReviseV2)
        assert ev.payload.rationale == "typo fix" and ev.payload.source == "v1"
        # ...a rebuild from the log still reaches the same state...
        replica = s.replay(tmp_path / "replica")
        with replica:
            assert [v.text for v in replica.history(mid)] == ["v1 text", "revised in v1"]
        # ...and new v2 events are accepted beside the old ones.
        out = s.append(
            [
                s.event(
                    "revise",
                    "user/alice",
                    mid,
                    {"text": "v2", "source": "import", "rationale": "x"},
                )
            ]
        )[0]
        assert out.accepted and out.version == 3
        # A v1 event from an old producer is upcast on the way in.
        raw = wire(
            event_id="01a204d8-ab18-77f4-8e51-38ae95b987ff",
            type="revise",
            memory_id=mid,
            payload={"text": "old producer", "reason": "legacy"},
        )
        [o] = s.publish_json(json.dumps(raw))
        assert o.accepted and s.history(mid, min_offset=o.offset)[-1].text == "old producer"
