"""Which partition a key belongs to: murmur2, as the Java client and aiokafka compute it.

librdkafka-based producers (kcat, confluent-kafka) hash with CRC32 by default and put a
namespace on another partition; they must set ``partitioner=murmur2_random``. A record on
the wrong partition for its key is caught by :func:`partition_of` and audited as
``misrouted``, never projected into the wrong shard.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Kafka's default for keyed records)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
