"""A delivery's position on the Kafka runtime: one integer for (partition, offset).

An embedded store has one log: a position is an offset. The Kafka runtime's log has a
partition per namespace hash, each with offsets of its own; a subscription over several
partitions merges them, and a position must say which partition it is in. It stays one
integer (an SSE event id, what ``ack`` takes): ``offset * SPAN + partition``. Deliveries
carry the partition beside it (``Delivery.partition``), heartbeats the position reached in
each partition (``Heartbeat.partitions``).
"""

from __future__ import annotations

__all__ = ["SPAN", "decode", "encode"]

#: Partitions a position can name (the Kafka runtime refuses more for subscriptions).
SPAN = 1024


def encode(partition: int, offset: int) -> int:
    """The position of ``offset`` in ``partition``."""
    return offset * SPAN + partition


def decode(position: int) -> tuple[int, int]:
    """``(partition, offset)`` of a position."""
    offset, partition = divmod(position, SPAN)
    return partition, offset
