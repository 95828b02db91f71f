"""Creating the runtime's topics with explicit configs, and checking them at start.

The events topic is the system of record: it must keep every record forever
(``retention.ms=-1``) and never be compacted (``cleanup.policy=delete``); a worker refuses
to start on an events topic configured otherwise, as it does when the requests and events
topics disagree on their partition count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from .settings import KafkaSettings

TOPIC_ALREADY_EXISTS = 36


class TopicMisconfigured(RuntimeError):
    """A topic exists with settings the runtime cannot work with (the message says which)."""


class BrokerUnavailable(ConnectionError):
    """The broker did not answer within the bounded wait."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]
    #: configs that must hold exactly on an existing topic
    required: tuple[str, ...] = ()


def specs(s: KafkaSettings) -> list[TopicSpec]:
    return [
        TopicSpec(
            s.requests,
            s.partitions,
            {"cleanup.policy": "delete", "retention.ms": str(s.requests_retention_ms)},
            ("cleanup.policy",),
        ),
        TopicSpec(
            s.events,
            s.partitions,
            {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
            ("cleanup.policy", "retention.ms"),
        ),
        TopicSpec(
            s.outcomes,
            s.partitions,
            {"cleanup.policy": "delete", "retention.ms": str(s.outcomes_retention_ms)},
            ("cleanup.policy",),
        ),
        # Vectors by (model, content hash): compacted, the last vector (or tombstone) wins.
        TopicSpec(
            s.vectors,
            s.partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            ("cleanup.policy",),
        ),
        # What a face keeps per partition (subscription cursors), in the partition of the
        # same number: compacted, the last value per key wins.
        TopicSpec(
            s.partition_state,
            s.partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            ("cleanup.policy",),
        ),
        # One partition: every worker reads every key, and the order decides which of two
        # keys proposed at once for the same id wins. Compaction drops destroyed keys'
        # bytes; short segments and no compaction lag make it do so soon.
        TopicSpec(
            s.keys,
            1,
            {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": "0",
                "segment.ms": str(3600 * 1000),
                "delete.retention.ms": str(3600 * 1000),
            },
            ("cleanup.policy",),
        ),
    ]


async def ensure_topics(s: KafkaSettings, *, create: bool = True, timeout: float = 30.0) -> None:
    """Create the missing topics (with their configs) and check the existing ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as e:
        await admin.close()
        raise BrokerUnavailable(
            f"no Kafka broker answered at {s.bootstrap} within {timeout:.0f}s ({e!r}); "
            "check MEMSTREAM_KAFKA_BOOTSTRAP and that the broker runs"
        ) from None
    try:
        wanted = specs(s)
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing and create:
            res = await admin.create_topics(
                [
                    NewTopic(t.name, t.partitions, s.replication, topic_configs=t.configs)
                    for t in missing
                ]
            )
            for topic, code, message in res.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise TopicMisconfigured(f"creating topic {topic} failed: {message} ({code})")
        elif missing:
            raise TopicMisconfigured(
                f"topics {', '.join(t.name for t in missing)} do not exist; run `memstream "
                "topics create` (or start a worker, which creates them)"
            )
        await _check(admin, wanted)
    finally:
        await admin.close()


async def _check(admin: AIOKafkaAdminClient, wanted: list[TopicSpec]) -> None:
    described = await admin.describe_topics([t.name for t in wanted])
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    by_name = {t.name: t for t in wanted}
    for t in wanted:
        if counts.get(t.name) != t.partitions:
            raise TopicMisconfigured(
                f"topic {t.name} has {counts.get(t.name)} partitions, this deployment expects "
                f"{t.partitions} (MEMSTREAM_KAFKA_PARTITIONS); requests and events must match"
            )
    resources = [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in wanted]
    for response in await admin.describe_configs(resources):
        for res in response.resources:
            code, _msg, _rtype, name, entries = res[:5]
            if code:
                continue  # a broker that cannot describe configs: creation set them
            have = {e[0]: e[1] for e in entries}
            spec = by_name[name]
            for key in spec.required:
                if key in have and have[key] != spec.configs[key]:
                    raise TopicMisconfigured(
                        f"topic {name} has {key}={have[key]}, it must be {spec.configs[key]}"
                        + (
                            ": the events topic is the system of record (keep every record, "
                            "never compact it)"
                            if name.endswith(".events")
                            else ""
                        )
                    )
