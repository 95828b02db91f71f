"""Events the SDK builds are validated once, when built; everything else in full at append.

``MemoryStore.event`` checks the envelope and the payload against the wire constraints and
``append`` then takes the event as it is, without a second encode/decode. Events built any
other way, or changed in place after the SDK built them, are validated in full: nothing
malformed reaches the log whichever way it comes.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest
from memstream.schemas import events as ev
from memstream.schemas.codec import EventCodec

from memstream import MalformedEvent, MemoryStore


def _nothing_appended(store: MemoryStore, head: int) -> None:
    assert store.head == head
    assert store.runtime.log.next_offset == head + 1


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"namespace": "not a namespace"}, "$.namespace"),
        ({"namespace": 42}, "$.namespace"),
        ({"memory_id": "has/slash"}, "$.memory_id"),
        ({"actor": "a" * 257}, "$.actor"),
        ({"expected_version": -1}, "$.expected_version"),
        ({"occurred_at": datetime(2026, 1, 1, 12, 0)}, "$.occurred_at"),
        ({"event_id": "not-a-uuid"}, "$.event_id"),
        ({"subject": "bad subject"}, "$.subject"),
        ({"context": ev.Context(app="x" * 2_001)}, "$.context.app"),
        ({"context": {"unknown": 1}}, "$.context"),
        ({"payload": {"text": 7}}, "$.payload.text"),
        ({"payload": ev.Create(text=7)}, "$.payload.text"),  # type: ignore[arg-type]
        ({"payload": ev.Create(text="t", tags=["ok", 3])}, "$.payload.tags[1]"),  # type: ignore[list-item]
        ({"payload": ev.Revise(text="t")}, "$.payload"),
    ],
)
def test_sdk_built_event_with_bad_data_is_refused(store: MemoryStore, kw, field):
    head = store.head
    args = {"namespace": "user/alice", "memory_id": "m1", "payload": {"text": "fine"}}
    args.update(kw)
    with pytest.raises(MalformedEvent) as info:
        e = store.event(
            "create", args.pop("namespace"), args.pop("memory_id"), args.pop("payload"), **args
        )
        store.append([e])
    assert info.value.field is not None and info.value.field.startswith(field)
    _nothing_appended(store, head)


def test_sdk_operation_with_bad_data_is_refused(store: MemoryStore):
    head = store.head
    with pytest.raises(MalformedEvent) as info:
        store.create("user/alice ", "trailing space in the namespace")
    assert info.value.field == "$.namespace"
    with pytest.raises(MalformedEvent) as info:
        store.create("user/alice", "t", tags=["x" * 101])
    assert info.value.field == "$.payload.tags[0]"
    _nothing_appended(store, head)


def test_oversize_payload_is_refused_when_built(store_dir):
    with MemoryStore.open(store_dir, durability="os", max_event_bytes=1_000) as s:
        with pytest.raises(MalformedEvent) as info:
            s.create("user/alice", "x" * 2_000)
        assert info.value.field == "$.payload"
        assert "over the limit" in str(info.value)
        assert s.head == -1
        assert s.create("user/alice", "x" * 500).accepted


def test_built_events_skip_the_second_validation(store: MemoryStore, monkeypatch):
    calls: list[int] = []
    real = EventCodec.validate

    def counting(self, events):
        calls.append(len(events))
        return real(self, events)

    monkeypatch.setattr(EventCodec, "validate", counting)
    batch = [store.event("create", "user/alice", f"m{i}", {"text": f"t{i}"}) for i in range(5)]
    assert all(o.accepted for o in store.append(batch))
    assert store.create("user/alice", "one more").accepted
    assert calls == []
    # Built by hand: validated in full.
    hand = ev.Event(
        event_id="01a204d8-ab18-77f4-8e51-38ae95b98781",
        type="create",
        schema_version=1,
        namespace="user/alice",
        memory_id="by-hand",
        occurred_at=batch[0].occurred_at,
        actor="tester",
        payload=ev.Create(text="by hand"),
    )
    assert store.append([hand])[0].accepted
    assert calls == [1]
    # Appended a second time (a retry): validated in full, and a duplicate.
    again = store.append([batch[0]])
    assert calls == [1, 1] and again[0].duplicate


def test_changed_after_build_is_validated_again(store: MemoryStore):
    head = store.head
    e = store.event("create", "user/alice", "m1", {"text": "fine", "tags": ["a"]})
    e.payload.tags.append(7)  # type: ignore[union-attr]  (changed in place)
    with pytest.raises(MalformedEvent) as info:
        store.append([e])
    assert info.value.field == "$.payload.tags[1]"

    e = store.event("create", "user/alice", "m2", {"text": "fine"})
    moved = msgspec.structs.replace(e, namespace="no such/ namespace")
    good = store.event("create", "user/alice", "m3", {"text": "fine"})
    with pytest.raises(MalformedEvent) as info:
        store.append([good, moved])
    assert info.value.field == "$.namespace" and info.value.index == 1
    _nothing_appended(store, head)


def test_hand_built_event_with_bad_data_is_refused(store: MemoryStore):
    head = store.head
    bad = ev.Event(
        event_id="01a204d8-ab18-77f4-8e51-38ae95b98781",
        type="create",
        schema_version=1,
        namespace="user/alice",
        memory_id="m1",
        occurred_at=datetime(2026, 1, 1),  # naive: refused
        actor="tester",
        payload=ev.Create(text="t"),
    )
    with pytest.raises(MalformedEvent) as info:
        store.append([bad])
    assert info.value.field == "$.occurred_at"
    _nothing_appended(store, head)


def test_built_event_reads_back_as_replayed(store: MemoryStore, tmp_path):
    """What the live path decided from a built event equals what a replay decides from the
    stored record."""
    e = store.event(
        "create",
        "user/alice",
        "m1",
        {"text": "Alice likes tea", "tags": ["food"], "metadata": {"n": 1, "f": 0.5}},
        context={"app": "a", "attributes": {"k": "v"}},
    )
    store.append([e])
    store.revise("m1", "Alice likes green tea", metadata={"n": 2})
    store.flush()
    live = store.runtime.duck.query("SELECT * FROM memories")
    with store.replay(tmp_path / "replay") as r:
        assert r.runtime.duck.query("SELECT * FROM memories") == live


@pytest.mark.parametrize("idle", [10**300, -(10**300), float("inf"), float("nan"), -1])
def test_a_follow_timeout_out_of_range_is_a_bad_request(store: MemoryStore, idle) -> None:
    """An int too large for a float once overflowed the range check itself."""
    from memstream.errors import BadRequest

    with pytest.raises(BadRequest) as info:
        next(iter(store.follow(0, idle=idle)))
    assert info.value.field == "idle"
