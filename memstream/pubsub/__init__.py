"""Pub/sub (the MemOS paper's MemStore): subscriptions delivered from the log.

- :mod:`.cursors`: where subscriptions keep their positions and parked deliveries;
- :mod:`.consumer`: one subscription's durable delivery state (ready, in flight, acked);
- :mod:`.hub`: the consumers of a store, and the processors that push them live matches;
- :mod:`.ready`: waiting on many consumers at once (which may have something to deliver);
- :mod:`.positions`: a delivery's position on the Kafka runtime (partition and offset);
- :mod:`.methods`: the SDK's pub/sub methods (the embedded store's; the HTTP client's are
  in :mod:`memstream.client.pubsub`).

The filters themselves are pure (:mod:`memstream.projections.matching`); subscriptions and
publications are governance events (:mod:`memstream.projections.subscriptions`); the checks
made at each delivery live in the service (:mod:`memstream.service.pubsub`; the Kafka
runtime's merge of partitions in :mod:`memstream.service.merged`).
"""
