"""The distributed runtime: Apache Kafka is the log, Faust workers run the projectors.

Topics (names under a configurable prefix, ``memstream`` by default):

``memstream.requests``
    Operations as producers send them: plain JSON events, keyed by namespace (murmur2, as
    the Java client and aiokafka hash keys). Bounded retention.
``memstream.events``
    The immutable log: sealed records (the payload encrypted under its subject's key), one
    partition per shard, unlimited retention, ``cleanup.policy=delete`` (never compacted).
    Written only by the sequencer, in the partition of the request it came from.
``memstream.outcomes``
    The verdict on every event, published from an outbox after the shard's DuckDB commit,
    keyed by event id; producers await them.
``memstream.keys``
    The subjects' data keys, compacted, one partition (a total order: the first key
    recorded for a key id wins). An erase replaces each of the subject's keys by a
    "destroyed" record, so compaction removes the key bytes from the topic.

Modules: :mod:`.settings` (names, partitions, timeouts), :mod:`.topics` (creation and
checks), :mod:`.partitioning` (murmur2), :mod:`.records` (what travels on each topic),
:mod:`.keys` (the shared key store), :mod:`.sequencer` (request → sealed record),
:mod:`.shard` (one partition's projections: the same decide/project as the embedded
driver), :mod:`.worker` (the Faust app), :mod:`.producer` (publishing and awaiting
outcomes), :mod:`.broker` (a local Kafka-protocol broker for tests and trials).
"""
