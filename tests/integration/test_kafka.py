"""The Kafka runtime end to end: real broker, real worker processes, real clients."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from memstream.streams.kafka.partitioning import partition_of

from memstream.errors import InvalidTransition, UnknownMemory
from memstream.kafka import KafkaMemoryStore


def test_sdk_publishes_a_worker_decides_and_any_worker_reads(deployment) -> None:
    w = deployment.start_worker("w1")
    deployment.serving()
    with KafkaMemoryStore(deployment.settings, actor="agent-7", api=w.url) as store:
        tea = store.create("user/alice", "Alice drinks green tea", tags=["preference"])
        assert tea.accepted and tea.version == 1
        assert tea.partition == partition_of(b"user/alice", deployment.partitions)
        rev = store.revise(tea.memory_id, "Alice drinks jasmine tea", reason="she said so")
        assert (rev.version, rev.offset) == (2, tea.offset + 1)
        store.archive(tea.memory_id)
        with pytest.raises(InvalidTransition):
            store.revise(tea.memory_id, "archived memories take no revision")
        with pytest.raises(UnknownMemory):
            store.revise("nobody", "x", namespace="user/alice")
        m = store.get(tea.memory_id, min_offset=rev.offset)
        assert (m.text, m.state, m.version) == ("Alice drinks jasmine tea", "archived", 2)
        assert [v.text for v in store.history(tea.memory_id)] == [
            "Alice drinks green tea",
            "Alice drinks jasmine tea",
        ]
        page = store.audit("user/alice")
        assert [(e.type, e.status) for e in page.entries] == [
            ("create", "accepted"),
            ("revise", "accepted"),
            ("archive", "accepted"),
            ("revise", "rejected"),
            ("revise", "rejected"),
        ]
        assert {e.actor for e in page.entries} == {"agent-7"}


def _wire(t: str, ns: str, mid: str, payload: dict) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": t,
        "schema_version": 1,
        "namespace": ns,
        "memory_id": mid,
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": "librdkafka",
        "payload": payload,
    }


def _crc32_misplaced(partitions: int) -> str:
    """A namespace that librdkafka's default partitioner puts on another partition."""
    import zlib

    for i in range(1000):
        ns = f"team/t{i}"
        if zlib.crc32(ns.encode()) % partitions != partition_of(ns.encode(), partitions):
            return ns
    raise AssertionError("no namespace found")


def test_raw_json_from_librdkafka_is_projected_like_the_sdk_and_bad_records_are_audited(
    deployment,
) -> None:
    from confluent_kafka import Producer

    w = deployment.start_worker("w1")
    deployment.serving()
    s = deployment.settings
    ops = [
        ("create", "1", {"text": "Bob prefers window seats", "tags": ["travel"]}),
        ("revise", "1", {"text": "Bob prefers aisle seats"}),
        ("create", "2", {"text": "Bob is vegetarian"}),
        ("merge", "3", {"sources": ["1", "2"], "text": "Bob: aisle seat, vegetarian meal"}),
        ("archive", "1", {}),  # merged away: rejected
    ]

    def ids(prefix: str, op: tuple) -> tuple:
        t, mid, p = op
        if "sources" in p:
            p = {**p, "sources": [prefix + x for x in p["sources"]]}
        return t, prefix + mid, p

    with KafkaMemoryStore(s, api=w.url) as store:
        # the operations through the SDK, in namespace user/sdk (memory ids s1, s2, s3)
        sdk = store.append(
            [store.event(t, "user/sdk", m, p) for t, m, p in (ids("s", o) for o in ops)]
        )
        # the same as plain JSON from librdkafka with the Java-compatible partitioner
        good = Producer({"bootstrap.servers": s.bootstrap, "partitioner": "murmur2_random"})
        for t, m, p in (ids("r", o) for o in ops):
            good.produce(
                s.requests, json.dumps(_wire(t, "user/raw", m, p)).encode(), key=b"user/raw"
            )
        # then garbage, and a record librdkafka's default (CRC32) puts on the wrong partition
        good.produce(s.requests, b"{not json", key=b"user/raw")
        good.produce(s.requests, json.dumps({"type": "create"}).encode(), key=b"user/raw")
        assert good.flush(30) == 0
        ns = _crc32_misplaced(deployment.partitions)
        crc = Producer({"bootstrap.servers": s.bootstrap})
        crc.produce(
            s.requests,
            json.dumps(_wire("create", ns, "x1", {"text": "lost?"})).encode(),
            key=ns.encode(),
        )
        assert crc.flush(30) == 0
        # the worker goes on: a later SDK event in the same partition is decided
        assert store.create("user/raw", "after the garbage", memory_id="r9").accepted

        def state(namespace: str, prefix: str) -> list[tuple]:
            return [
                (m.memory_id[1:], m.state, m.version, m.revision, m.text)
                for i in ("1", "2", "3")
                if (m := store.get(prefix + i, namespace=namespace)) is not None
            ]

        assert [o.status for o in sdk] == ["accepted"] * 4 + ["rejected"]
        assert len(state("user/raw", "r")) == 3
        assert state("user/raw", "r") == state("user/sdk", "s")
        raw_audit = store.audit("user/raw").entries
        assert [(e.type, e.code) for e in raw_audit if e.status == "rejected"] == [
            ("archive", "invalid_transition"),
            ("malformed", "malformed"),
            ("malformed", "malformed"),
        ]
        assert {e.actor for e in raw_audit if e.type == "create"} == {"librdkafka", "sdk"}
        # the misrouted record is audited (in the partition it was written to), not projected
        assert store.get("x1", namespace=ns) is None
        deadline = time.monotonic() + 30
        while True:
            found = [
                e
                for p in range(deployment.partitions)
                for e in store.audit(partition=p, type="misrouted").entries
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(found) == 1 and ns in found[0].reason and "murmur2" in found[0].reason
