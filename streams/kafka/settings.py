"""Settings of the Kafka runtime: where the broker is, the topics, the bounded waits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class KafkaSettings:
    """Everything a producer, the sequencer and a worker must agree on.

    ``partitions`` is the number of partitions of the requests and events topics (they must
    match: the sequencer writes a request's events into the events partition of the same
    number, so a namespace keeps one order end to end). Changing it later moves namespaces
    between partitions and breaks their ordering; see ops/kafka.md.
    """

    bootstrap: str = "127.0.0.1:9092"
    prefix: str = "memstream"
    partitions: int = 8
    replication: int = 1
    requests_retention_ms: int = 7 * DAY_MS
    outcomes_retention_ms: int = 1 * DAY_MS
    #: How long a producer waits for the broker's acknowledgement before it reports the
    #: event as not written.
    send_timeout: float = 15.0
    #: How long an SDK call waits for the outcome of an acknowledged event.
    outcome_timeout: float = 30.0
    group: str = "memstream-workers"
    #: Faust's consumer session timeout: how soon a dead worker's partitions move.
    session_timeout: float = 10.0
    data_dir: Path = field(default_factory=lambda: Path("memstream-kafka-data"))

    @classmethod
    def from_env(cls, **overrides: object) -> KafkaSettings:
        """Settings from ``MEMSTREAM_KAFKA_*`` environment variables, then ``overrides``.

        The variables are the fields' names in capitals: ``MEMSTREAM_KAFKA_BOOTSTRAP``,
        ``MEMSTREAM_KAFKA_PREFIX``, ``MEMSTREAM_KAFKA_PARTITIONS``,
        ``MEMSTREAM_KAFKA_REPLICATION``, ``MEMSTREAM_KAFKA_GROUP``,
        ``MEMSTREAM_KAFKA_SESSION_TIMEOUT``, ``MEMSTREAM_KAFKA_SEND_TIMEOUT``,
        ``MEMSTREAM_KAFKA_OUTCOME_TIMEOUT`` and ``MEMSTREAM_KAFKA_DATA_DIR``.
        """
        env = os.environ
        s = cls()
        conv = {
            "bootstrap": str,
            "prefix": str,
            "partitions": int,
            "replication": int,
            "group": str,
            "session_timeout": float,
            "send_timeout": float,
            "outcome_timeout": float,
            "data_dir": Path,
        }
        found = {}
        for name, f in conv.items():
            var = f"MEMSTREAM_KAFKA_{name.upper()}"
            if var in env:
                try:
                    found[name] = f(env[var])
                except ValueError:
                    raise ValueError(f"{var}={env[var]!r} is not a valid {f.__name__}") from None
        found.update({k: v for k, v in overrides.items() if v is not None})
        return replace(s, **found)  # type: ignore[arg-type]

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
