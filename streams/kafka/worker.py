"""``memstream worker``: the Faust app that runs the sequencer and the projectors.

A worker owns partition *p* when Faust's consumer group assigns it partition *p* of
``memstream.requests``; the events topic has the same partition count and the same keys,
so partition *p* of the log is its own too.

- The ``sequence`` agent reads ``memstream.requests``: validates, seals, and appends to
  ``memstream.events`` (same partition) with ``acks=all``, before its batch is acknowledged.
- The projector follows the owned partitions of ``memstream.events`` with a plain
  aiokafka reader (no group) and hands each partition's records to its
  :class:`~.shard.Shard` (the same decide and project as the embedded driver), then
  publishes the outcomes (outbox) and the key destructions of erases. A fetch returns
  whatever arrived while the previous batch was being written (up to ``PROJECT_BATCH``), so
  batches grow with the load by themselves: group commit, with no window to tune.

Why the projector is not a Faust agent: an agent costs the worker Faust's per-message
handling (100-200 µs of interpreter time per record here), and a second agent on the
events topic paid it once more for every event. With it, one worker fed by the SDK reached
0.39 of a no-op agent's rate, about half of its interpreter time in Faust's consumer;
without it, 0.93-0.98 (docs/benchmarks.md). The group still decides who owns what,
through the requests topic.

The shard's offset, committed with its rows, is the authority; nothing else records how far
the projection got. The reader starts each gained partition at its shard's offset, records
the shard already holds are skipped, and a gap (a partition lost and regained meanwhile) is
filled from the log first. When the worker cannot apply a batch it exits at once; on
restart it resumes from its shards' offsets.

Every worker serves the HTTP API for every namespace; it is assembled outside this layer
(:mod:`memstream.http.worker`, over :class:`Node`, with Faust's web server off): a read for
a namespace whose partition another worker owns is forwarded there (Faust's router knows
the assignment), and a partition that is still catching up answers 503 with its lag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from .node import EXIT_APPLY_FAILED, Node, fatal
from .settings import KafkaSettings
from .shard_processors import ShardExtras

# -- the Faust app -----------------------------------------------------------------------------


def create_app(
    settings: KafkaSettings,
    *,
    data_dir: Path | None = None,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    advertise: str | None = None,
    semantic: bool = True,
    extras: ShardExtras | None = None,
) -> faust.App:
    """The worker app: the sequencer agent, the projector and the partition callbacks.
    ``extras``: processors the face adds to every shard (the subscriptions').

    ``web_host``/``web_port`` (or ``advertise``) make the URL the other workers reach this
    one's HTTP API at, which the face layer serves (Faust's own web server stays off)."""
    data_dir = Path(data_dir or settings.data_dir)
    app = faust.App(
        settings.group,
        broker=f"kafka://{settings.bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
        web_enabled=False,
        web_host=web_host,
        web_port=web_port,
        canonical_url=f"http://{advertise or web_host}:{web_port}",
        datadir=str(data_dir / "faust"),
        table_cleanup_interval=3600,
    )
    node = Node(settings, data_dir, semantic=semantic, extras=extras)
    app.memstream = node  # type: ignore[attr-defined]
    requests = app.topic(settings.requests, key_serializer="raw", value_serializer="raw")

    @app.task
    async def _start() -> None:
        try:
            await node.start()
        except Exception as e:
            fatal("starting the worker", e)

    @app.agent(requests, concurrency=1)
    async def sequence(stream: Any) -> None:
        async for batch in stream.take_events(500, within=0.02):
            try:
                await node.sequence(batch)
            except Exception as e:
                fatal("sequencing a batch of requests", e)

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[Any], **kw: Any) -> None:
        node.assigned(assigned)

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: set[Any], **kw: Any) -> None:
        await node.revoked(revoked)

    @app.on_before_shutdown.connect
    async def _shutdown(sender: Any, **kw: Any) -> None:
        await node.stop()  # shards closed after their last commit; keys and producer

    return app


__all__ = ["EXIT_APPLY_FAILED", "Node", "create_app"]
