"""The policy follower folds the governance partition's records to the owning shard's
verdicts: duplicates (a producer's retry) and records it must leave out change nothing."""

from __future__ import annotations

from pathlib import Path

from memstream.projections.policy import PolicyState
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import GOVERNANCE_NAMESPACE, default_registry
from memstream.streams.kafka.policy import PolicyFollower
from memstream.streams.kafka.records import (
    H_EVENT_ID,
    H_KIND,
    H_RECORDED_AT,
    KIND_INCIDENT,
    KRecord,
)
from memstream.streams.kafka.settings import KafkaSettings
from memstream.streams.keystore import KeyStore
from memstream.streams.sealing import Sealer

from memstream import MemoryStore

GOV = GOVERNANCE_NAMESPACE


def test_the_follower_reaches_the_shard_s_rules_and_ignores_duplicates(tmp_path: Path) -> None:
    codec = EventCodec(default_registry())
    sealer = Sealer(KeyStore(tmp_path / "keys.sqlite"), codec)
    with MemoryStore.open(tmp_path / "s", semantic=False, retention=False) as store:
        events = [
            store.event("principal", GOV, "alice", {"kind": "user"}),
            store.event("principal", GOV, "alice", {"kind": "user", "disabled": True}),
            store.event("grant", GOV, "g1", {"to": "alice", "object": "team/*", "modes": ["read"]}),
            store.event("revoke", GOV, "nope", {}),  # rejected: no such grant
        ]
        # the same events through the embedded store: the reference rules
        store.append(events)
        store.flush()
        expected = store.backend.policy()
    records, offset = [], 0

    def add(value: bytes, key: bytes, headers: dict[str, bytes]) -> None:
        nonlocal offset
        stamp = str(1_000_000 + offset).encode()
        records.append(KRecord(offset, key, value, {H_RECORDED_AT: stamp, **headers}))
        offset += 1

    for e in events:
        add(sealer.seal(e)[0], GOV.encode(), {H_EVENT_ID: e.event_id.encode()})
    # a retried copy of the first principal event would enable alice again: a duplicate
    add(sealer.seal(events[0])[0], GOV.encode(), {H_EVENT_ID: events[0].event_id.encode()})
    # an incident, and a governance event under another key (misrouted): no rule
    add(b"{}", GOV.encode(), {H_KIND: KIND_INCIDENT, H_EVENT_ID: b"i-1"})
    add(sealer.seal(events[1])[0], b"user/bob", {H_EVENT_ID: b"x-2"})

    follower = PolicyFollower(KafkaSettings(partitions=4), sealer)
    follower.start_end = len(records)
    follower.apply(records[:3])
    assert not follower.ready.is_set()
    follower.apply(records[2:])  # an overlap is skipped by offset
    assert follower.ready.is_set() and follower.offset == len(records) - 1
    got = follower.state
    assert got.principals["alice"].disabled  # the duplicate did not enable her again
    assert set(got.grants) == {"g1"} == set(expected.grants)
    assert {k: (p.kind, p.disabled, p.groups) for k, p in got.principals.items()} == {
        k: (p.kind, p.disabled, p.groups) for k, p in expected.principals.items()
    }
    # the rows fold back to the same rules; as of offset 0 alice was enabled
    assert [r[1] for r in follower.rows()] == ["principal", "principal", "grant"]
    assert not PolicyState.fold(follower.rows(0)).principals["alice"].disabled
    assert PolicyState.fold(follower.rows()).principals["alice"].disabled
