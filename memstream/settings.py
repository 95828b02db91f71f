"""The settings of the faces (CLI, server, SDK, Kafka worker, benchmarks), each declared
once, with the environment variable that sets it. The store's own settings are
:class:`memstream.streams.settings.StoreSettings` (``MEMSTREAM_MAX_EVENT_BYTES``,
``MEMSTREAM_BATCH_SIZE``...) and the Kafka runtime's
:class:`memstream.streams.kafka.settings.KafkaSettings` (``MEMSTREAM_KAFKA_*``).

The CLI's options take their defaults, limits, help and variables from these fields
(:func:`memstream.cli.common.setting`), so a variable means the same to every face.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from memstream.streams.settings import Settings, SettingsError, env_var

__all__ = [
    "SEMANTIC_ENV",
    "AccessLogSettings",
    "BenchSettings",
    "CliSettings",
    "RetentionSettings",
    "SearchSettings",
    "ServeSettings",
    "Settings",
    "SettingsError",
    "WorkerSettings",
    "semantic_default",
]


class CliSettings(Settings):
    """Which store a command works on."""

    store: Path = Field(
        Path("memstream-data"),
        description="Store directory (goes through its server when one holds it).",
    )
    url: str | None = Field(
        None,
        description="URL of a running memstream server (default: the one holding --store, if any).",
    )


class ServeSettings(Settings):
    """The HTTP server of ``memstream serve``."""

    port: int = Field(8765, ge=0, le=65535, description="Port; 0 picks a free one.")
    max_body_bytes: int | None = Field(
        None,
        ge=1,
        description="Largest request body, in bytes; 413 beyond (default: the larger of 32 MiB "
        "and 8 x max-event-bytes).",
    )
    auth: bool = Field(
        True,
        description="Require a bearer token on every request but /health. Off: every caller "
        "is unchecked and acts as the principal it names (local development only; logged).",
    )


class SearchSettings(Settings):
    """Whether stores keep their search indexes (embeddings, hnswlib, BM25)."""

    semantic: bool = Field(
        True,
        description="Keep search indexes (embeddings, hnswlib, BM25) of the partitions served.",
    )


#: The environment switch of the search indexes (``0`` turns them off).
SEMANTIC_ENV = env_var(SearchSettings, "semantic")


def semantic_default() -> bool:
    """Whether an embedded store opens with its search indexes when not told."""
    return SearchSettings().semantic


class RetentionSettings(Settings):
    """The retention scheduler of an embedded store (``memstream serve``, ``MemoryStore.open``)."""

    retention: bool = Field(
        True,
        description="Run the retention scheduler: expire and erase memories when their TTLs, "
        "expiry times and retention policies fall due.",
    )
    retention_interval: float = Field(
        60.0,
        ge=0,
        le=1e9,
        description="Seconds between two background passes of the retention scheduler "
        "(0: none; `memstream retention run` still runs one).",
    )


class WorkerSettings(Settings):
    """A Kafka worker's HTTP API, and where clients find one."""

    web_host: str = Field("127.0.0.1", description="Address of this worker's HTTP API.")
    web_port: int = Field(6066, ge=0, le=65535, description="Port of the HTTP API.")
    web_advertise: str | None = Field(
        None, description="Host other workers reach this one at (default: --web-host)."
    )
    api: str = Field(
        "http://127.0.0.1:6066",
        description="Any worker's HTTP API, e.g. http://127.0.0.1:6066.",
    )
    auth: bool = Field(
        True,
        description="Require a bearer token on every request but /health: a principal's "
        "token, or another worker's cluster token. Off: every caller is unchecked and acts as "
        "the principal it names (local development only; logged).",
    )
    cluster_token: str | None = Field(
        None,
        description="The secret the workers of one deployment authenticate each other with "
        "(the same on every worker, at least 32 characters). Required with auth on.",
    )


class BenchSettings(Settings):
    """The benchmarks' data."""

    model_config = SettingsConfigDict(env_prefix="MEMSTREAM_BENCH_")

    cache: Path | None = Field(
        None,
        description="Where the search suite keeps its embeddings between runs "
        "(default ~/.cache/memstream/bench).",
    )
    labelled: Path | None = Field(
        None, description="The labelled retrieval set (default: the source checkout's)."
    )


class AccessLogSettings(Settings):
    """The access log of an embedded store: every read, by whom, of which memories
    (:mod:`memstream.governance.access_log`; ``<store>/access/``)."""

    model_config = SettingsConfigDict(env_prefix="MEMSTREAM_ACCESS_LOG_")

    enabled: bool = Field(
        True,
        description="Record every read (get, history, list, search, audit, follow) in the "
        "store's access log.",
    )
    max_age_days: float = Field(
        90.0, ge=0, description="Drop access records older than this many days (0: keep any age)."
    )
    max_records: int = Field(
        5_000_000, ge=0, description="Keep at most this many access records (0: no bound)."
    )
    flush_interval: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="Seconds between two writes of the recorded reads: at most this much is "
        "lost if the process is killed.",
    )
    prune_interval: float = Field(
        60.0, gt=0, description="Seconds between two prunings of the records past retention."
    )
