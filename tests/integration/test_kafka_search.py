"""Search in the Kafka runtime: indexes per partition, gathered across workers, and vectors
shared through the vectors topic so a moved partition is not embedded again."""

from __future__ import annotations

from memstream.streams.kafka.partitioning import partition_of

from memstream.kafka import KafkaMemoryStore

FACTS = {
    "user/carol": "Carol drinks oolong tea every afternoon",
    "user/dave": "Dave is allergic to peanuts and shellfish",
    "user/erin": "Erin's daughter plays the violin in the school orchestra",
    "user/frank": "Frank flies to Lisbon on the first Monday of March",
    "team/ops": "The on-call rotation changes every Tuesday at noon",
    "team/sales": "The quarterly sales review is held in the Oslo office",
    "user/gina": "Gina prefers the vegetarian menu at company dinners",
    "user/hank": "Hank's car is a blue station wagon with a roof box",
}


def _top(store: KafkaMemoryStore, text: str, **kw) -> str | None:
    hits = store.search(text, k=3, **kw)
    return hits[0].memory.memory_id if hits else None


def _tombstones(settings) -> int:
    """Tombstones on the vectors topic (waits a little for the follower to publish)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def count() -> int:
        c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest")
        await c.start()
        try:
            tps = [TopicPartition(settings.vectors, p) for p in range(settings.partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            seen = 0
            for _ in range(20):
                got = await c.getmany(timeout_ms=300)
                seen += sum(r.value is None for recs in got.values() for r in recs)
                if seen:
                    return seen
            return seen
        finally:
            await c.stop()

    return asyncio.run(count())


def test_search_gathers_from_every_owner_and_a_moved_partition_is_not_embedded_again(
    deployment,
) -> None:
    w1 = deployment.start_worker("w1", MEMSTREAM_SEMANTIC="1")
    w2 = deployment.start_worker("w2", MEMSTREAM_SEMANTIC="1")
    owners = deployment.serving([w1, w2])
    parts = {ns: partition_of(ns.encode(), deployment.partitions) for ns in FACTS}
    assert {owners[p].name for p in parts.values()} == {"w1", "w2"}, "facts on both workers"
    with KafkaMemoryStore(deployment.settings, api=w1.url) as store:
        ids = {}
        for ns, text in FACTS.items():
            out = store.create(ns, text, memory_id=ns.replace("/", "-"))
            ids[ns] = out.memory_id
            # read your own write: the partition's indexes reached the create
            assert _top(store, text, namespaces=[ns], min_offset=out.offset) == out.memory_id
        # no namespace: every partition is searched, on both workers, and merged
        for ns, text in FACTS.items():
            assert _top(store, text) == ids[ns]
        hits = store.search("what does Carol like to drink?", k=3)
        assert hits[0].memory.memory_id == ids["user/carol"]
        archived = store.archive(ids["user/dave"])
        # once the partition's indexes reached the archive, the memory is out of search
        dave = dict(namespaces=["user/dave"], min_offset=archived.offset)
        assert _top(store, FACTS["user/dave"], **dave) is None
        assert all(
            h.memory.memory_id != ids["user/dave"] for h in store.search(FACTS["user/dave"], k=8)
        )
        assert _top(store, FACTS["user/dave"], include_archived=True) == ids["user/dave"]

        # an erase shreds the vectors too: the worker that indexed it publishes tombstones
        erased = store.erase(ids["user/hank"], reason="asked to be forgotten")
        assert (
            _top(store, FACTS["user/hank"], namespaces=["user/hank"], min_offset=erased.offset)
            is None
        )
        assert _tombstones(deployment.settings) >= 1

        embedded = w1.status()["semantic"]["texts_embedded"]
        # w2's partitions (every partition holds a namespace besides the erased one)
        moved = [ns for ns, p in parts.items() if owners[p].name == "w2" and ns != "user/hank"]
        assert moved
        w2.process.kill()
        assert w2.process.wait(10) == -9
        deployment.serving([w1])
        for ns in moved:
            found = _top(store, FACTS[ns], namespaces=[ns], include_archived=True)
            assert found == ids[ns], ns
        status = w1.status()["semantic"]
        # w1 rebuilt w2's partitions' indexes from the vectors w2 published: it embedded no
        # memory text again (queries are embedded, but they are not memories)
        assert status["texts_embedded"] == embedded
        assert status["vectors_from_topic"] >= len(moved)
