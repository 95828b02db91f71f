"""Where a command's store is: a server (``--url``, or the one that holds the store), the
store directory itself, or the Kafka runtime."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memstream.errors import StoreLocked
from memstream.sdk import MemoryStore
from memstream.streams.embedded import LOG_FILE, MANIFEST

from .common import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, CliError

if TYPE_CHECKING:
    from memstream.client import HttpMemoryStore


def connect(url: str, actor: str, token: str | None = None) -> HttpMemoryStore:
    """The client of the server at ``url`` (``token``: default ``$MEMSTREAM_TOKEN``)."""
    from memstream.client import HttpMemoryStore

    return HttpMemoryStore.connect(url, actor=actor, token=token)


def via_server(root: Path, actor: str, locked: StoreLocked) -> HttpMemoryStore:
    """The client of the server that holds ``root`` (its lock is taken)."""
    from memstream.client import ServerUnavailable
    from memstream.server import read_server_info

    info = read_server_info(root)
    deadline = time.monotonic() + 5.0
    while info is None and time.monotonic() < deadline:
        time.sleep(0.1)  # a server that is starting writes server.json once it listens
        info = read_server_info(root)
    if info is None:
        raise locked
    try:
        client = connect(info.url, actor, info.token)  # the owner token of the run
    except ServerUnavailable as e:
        raise CliError(
            f"store {root} is locked, and its server.json names a server at {info.url} "
            f"(pid {info.pid}) that does not answer ({e}); if that process is gone, wait for "
            "its lock to be released, or stop the process that holds the store",
            EXIT_UNAVAILABLE,
            {"error": "server_unavailable", "url": info.url, "pid": info.pid},
        ) from None
    served = client.health().get("store")
    if served and Path(served).resolve() != root.resolve():
        client.close()
        raise CliError(
            f"store {root} is locked, but the server at {info.url} serves {served}; the "
            f"server.json in {root} is stale: stop the process that holds {root}",
            EXIT_UNAVAILABLE,
            {"error": "server_mismatch", "url": info.url},
        )
    return client


@contextlib.contextmanager
def open_store(
    store: Path,
    url: str | None,
    *,
    create: bool = False,
    max_event_bytes: int | None = None,
    actor: str = "cli",
    semantic: bool = False,
    read_only: bool = False,
    progress: Any = None,
    retention: Any = False,
) -> Iterator[MemoryStore | HttpMemoryStore]:
    """The store to work on: a server (``--url``, or the one holding ``store``) or the
    directory itself, opened for the duration of the command.

    An embedded store is opened without its search indexes unless ``semantic`` (only
    ``search`` needs them): they catch up from their checkpoint the next time they are
    opened, so other commands neither load the model nor wait for embeddings.
    ``read_only`` opens it for inspection (``--read-only``; see ``MemoryStore.open``).
    ``progress``: the store's progress factory (a rebuild, a flush, a model loading).
    ``retention``: the retention scheduler, as ``MemoryStore.open`` takes it (none by
    default: a command does not expire or erase anything as a side effect)."""
    if url:
        with connect(url, actor) as client:
            yield client
        return
    root = store.expanduser().absolute()
    if not create and not (root / MANIFEST).exists():
        raise CliError(
            f"no memstream store at {root}; pass --store DIR (or set MEMSTREAM_STORE), or "
            "create one with `memstream serve` or `memstream publish`",
            EXIT_BAD_INPUT,
            {"error": "no_store", "store": str(root)},
        )
    options: dict[str, Any] = {}
    if max_event_bytes is not None:
        options["max_event_bytes"] = max_event_bytes
    try:
        embedded = MemoryStore.open(
            root,
            actor=actor,
            semantic=semantic,
            read_only=read_only,
            progress=progress,
            retention=retention,
            **options,
        )
    except StoreLocked as locked:
        with via_server(root, actor, locked) as client:
            yield client
        return
    with embedded:
        yield embedded


@contextlib.contextmanager
def kafka_store(bootstrap: str, actor: str = "cli") -> Iterator[Any]:
    """The Kafka runtime as a publishing target (its workers decide; outcomes awaited)."""
    from memstream.kafka import KafkaMemoryStore

    with KafkaMemoryStore.connect(bootstrap, actor=actor) as target:
        yield target


def log_records(root: Path) -> int:
    """Records in the log of the store at ``root``."""
    from memstream.streams.log import EmbeddedLog

    log = EmbeddedLog(root / LOG_FILE, create=False)
    try:
        return log.next_offset
    finally:
        log.close()
