"""A Kafka shard's decided events read back from the broker, as a late processor sees them.

A worker decides a workload and stops. The shard it left is opened again in this process
with a connection to the real broker: its feed reads every decided event back (events from
the events topic, verdicts from the shard's audit), and a processor registered on a runner
over that feed catches up from offset 0: the same verdicts the producer got, the same
texts it sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from aiokafka import TopicPartition
from confluent_kafka import Producer
from memstream.projections.duck import DuckStore
from memstream.projections.processor import Decided, ProcessorContext
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import default_registry
from memstream.streams.kafka import clients
from memstream.streams.kafka.keys import SharedKeys
from memstream.streams.kafka.partitioning import partition_of
from memstream.streams.kafka.records import KRecord
from memstream.streams.kafka.shard import CORE_FILE, Shard
from memstream.streams.keystore import KeyStore
from memstream.streams.runner import ProcessorRunner
from memstream.streams.sealing import Sealer

from memstream.kafka import KafkaMemoryStore

NAMESPACE = "user/feed"


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.seen: list[Decided] = []
        self.done = threading.Event()
        self.until = -1

    def start(self, ctx: ProcessorContext) -> int:
        self.until = ctx.head
        return -1

    def process(self, batch: Sequence[Decided]) -> None:
        self.seen.extend(batch)
        if batch[-1][0].offset >= self.until:
            self.done.set()

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def _fetcher(settings, partition: int):
    def fetch(start: int, stop: int) -> list[KRecord]:
        async def read() -> list[KRecord]:
            tp = TopicPartition(settings.events, partition)
            reader = clients.reader(settings)
            await reader.start()
            out: list[KRecord] = []
            try:
                reader.assign([tp])
                reader.seek(tp, start)
                while not out or out[-1].offset < stop - 1:
                    got = await reader.getmany(tp, timeout_ms=1000)
                    out.extend(KRecord.of(r) for r in got.get(tp, []) if r.offset < stop)
            finally:
                await reader.stop()
            return out

        return asyncio.run(read())

    return fetch


def test_a_shard_reads_its_decided_events_back_from_the_broker(deployment, tmp_path) -> None:
    w = deployment.start_worker("w1")
    deployment.serving()
    with KafkaMemoryStore(deployment.settings, api=w.url) as store:
        a = store.create(NAMESPACE, "Alice drinks green tea", tags=["drink"])
        outcomes = [a]
        outcomes.append(store.revise(a.memory_id, "Alice drinks jasmine tea"))
        outcomes.append(store.archive(a.memory_id))
        outcomes += store.append([store.event("revise", NAMESPACE, a.memory_id, {"text": "no"})])
        b = store.create(NAMESPACE, "Bob likes jazz")  # a's subject, and erased alone
        erased = store.erase(b.memory_id)
        assert erased.erased == (b.memory_id,)
        outcomes += [b, erased]
        # a record that is no event: audited as an incident, read back as one
        raw = Producer(
            {"bootstrap.servers": deployment.settings.bootstrap, "partitioner": "murmur2_random"}
        )
        raw.produce(deployment.settings.requests, b"{not json", key=NAMESPACE.encode())
        assert raw.flush(30) == 0
        outcomes.append(store.create(NAMESPACE, "after the garbage"))
    assert deployment.stop(w) == 0

    settings = deployment.settings
    p = partition_of(NAMESPACE.encode(), deployment.partitions)
    shards = Path(w.data) / "shards"
    probe = DuckStore(shards / f"{settings.events}-{p}" / CORE_FILE)
    log_id = probe.meta()["log_id"]
    probe.close()
    keys = KeyStore(Path(w.data) / "keys.sqlite", create_keys=False)
    sealer = Sealer(keys, EventCodec(default_registry()))
    shard = Shard(shards, settings.events, p, deployment.partitions, log_id, sealer, keys)
    try:
        assert shard.rebuild_reason is None
        shard.fetch = _fetcher(settings, p)
        collect = Collect()
        runner = ProcessorRunner(shard.feed, shard.duck, [collect])
        runner.start()
        assert collect.done.wait(60), "the processor did not catch up from the broker"
        runner.close()
    finally:
        shard.close()
        keys.close()

    seen = {lg.offset: (lg, out) for lg, out in collect.seen}
    assert sorted(seen) == list(range(len(seen)))  # every offset once, in order
    for want in outcomes:
        logged, out = seen[want.offset]
        assert out.partition == p
        assert (out.status, out.code, out.version, out.memory_id, out.event_id) == (
            want.status,
            want.code,
            want.version,
            want.memory_id,
            want.event_id,
        )
        assert logged.event.event_id == want.event_id
    texts = [getattr(seen[o.offset][0].event.payload, "text", None) for o in outcomes]
    assert texts[:2] == ["Alice drinks green tea", "Alice drinks jasmine tea"]
    # the erased memory's content cannot be opened any more: a tombstone, not its text;
    # its neighbours under the same subject key open as before
    assert seen[outcomes[4].offset][0].event.payload is None
    assert seen[outcomes[-1].offset][0].event.payload.text == "after the garbage"

    # every worker learns it from the keys topic: one reading it from scratch holds b's data
    # key destroyed, a's and the subject's live
    async def read_keys() -> KeyStore:
        fresh = KeyStore(tmp_path / "fresh-keys.sqlite", create_keys=False)
        shared = SharedKeys(settings, fresh)
        await shared.start()
        await shared.stop()
        return fresh

    fresh = asyncio.run(read_keys())
    try:
        kid_a, kid_b = (seen[o.offset][0].key_id for o in (outcomes[0], outcomes[4]))
        assert kid_a.startswith(f"{NAMESPACE}#1/") and kid_b.startswith(f"{NAMESPACE}#1/")
        assert fresh.is_destroyed(kid_b) and not fresh.is_destroyed(kid_a)
        assert not fresh.is_destroyed(f"{NAMESPACE}#1")
    finally:
        fresh.close()
    incidents = [(lg, out) for lg, out in collect.seen if out.code == "malformed"]
    assert len(incidents) == 1
    logged, out = incidents[0]
    assert (logged.event.type, logged.event.event_id, logged.event.payload) == (
        "malformed",
        out.event_id,
        None,
    )
    assert "raw sha256" in logged.event.clear["reason"]
