"""Settings of the Kafka runtime: where the broker is, the topics, the bounded waits."""

from __future__ import annotations

from pathlib import Path

from memstream.streams.settings import Settings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

DAY_MS = 24 * 3600 * 1000


class KafkaSettings(Settings):
    """Everything a producer, the sequencer and a worker must agree on.

    Each field is read from ``MEMSTREAM_KAFKA_`` and its name in capitals
    (``MEMSTREAM_KAFKA_BOOTSTRAP``, ``MEMSTREAM_KAFKA_PARTITIONS``...) unless given.

    ``partitions`` is the number of partitions of the requests and events topics (they must
    match: the sequencer writes a request's events into the events partition of the same
    number, so a namespace keeps one order end to end). Changing it later moves namespaces
    between partitions and breaks their ordering; see ops/kafka.md.
    """

    model_config = SettingsConfigDict(env_prefix="MEMSTREAM_KAFKA_", frozen=True)

    bootstrap: str = Field("127.0.0.1:9092", description="Kafka brokers, host:port[,host:port].")
    prefix: str = Field("memstream", description="Topic name prefix.")
    partitions: int = Field(
        8,
        ge=1,
        description="Partitions of the requests/events topics (a new deployment creates them so).",
    )
    replication: int = Field(1, ge=1)
    requests_retention_ms: int = 7 * DAY_MS
    #: The verdicts are kept as long as the events (``-1``: forever), so a reader of the
    #: outcomes topic from offset 0 gets every verdict; they hold no content.
    outcomes_retention_ms: int = Field(-1, ge=-1)
    #: How long a producer waits for the broker's acknowledgement before it reports the
    #: event as not written.
    send_timeout: float = Field(15.0, gt=0)
    #: How long an SDK call waits for the outcome of an acknowledged event.
    outcome_timeout: float = Field(30.0, gt=0)
    group: str = Field("memstream-workers", description="Consumer group of the workers.")
    #: Faust's consumer session timeout: how soon a dead worker's partitions move.
    session_timeout: float = Field(
        10.0, gt=0, description="Seconds before a silent worker's partitions move to the others."
    )
    data_dir: Path = Field(
        Path("memstream-kafka-data"), description="Where this worker keeps its shards and keys."
    )

    @classmethod
    def from_env(cls, **overrides: object) -> KafkaSettings:
        """Settings from ``overrides`` that are not None, then ``MEMSTREAM_KAFKA_*``
        environment variables, then the defaults."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def requests(self) -> str:
        return self.topic("requests")

    @property
    def events(self) -> str:
        return self.topic("events")

    @property
    def outcomes(self) -> str:
        return self.topic("outcomes")

    @property
    def keys(self) -> str:
        return self.topic("keys")

    @property
    def vectors(self) -> str:
        return self.topic("vectors")

    @property
    def partition_state(self) -> str:
        return self.topic("partition-state")
