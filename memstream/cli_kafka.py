"""CLI commands of the Kafka runtime: ``worker``, ``topics``, ``status`` and ``broker``.

Registered on the main ``memstream`` app by :func:`register`. Every setting also reads a
``MEMSTREAM_KAFKA_*`` environment variable (``BOOTSTRAP``, ``PARTITIONS``, ``GROUP``,
``DATA_DIR``...), which is how docker-compose configures the workers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import typer
from rich.console import Console
from rich.table import Table

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        envvar="MEMSTREAM_KAFKA_BOOTSTRAP",
        help="Kafka brokers, host:port[,host:port].",
    ),
]
PartitionsOpt = Annotated[
    int | None,
    typer.Option(
        "--partitions",
        envvar="MEMSTREAM_KAFKA_PARTITIONS",
        min=1,
        help="Partitions of the requests/events topics (a new deployment creates them so).",
    ),
]
PrefixOpt = Annotated[
    str | None, typer.Option("--prefix", envvar="MEMSTREAM_KAFKA_PREFIX", help="Topic name prefix.")
]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _settings(**kw: Any):
    from memstream.streams.kafka.settings import KafkaSettings

    return KafkaSettings.from_env(**kw)


def worker(
    bootstrap: BootstrapOpt = None,
    partitions: PartitionsOpt = None,
    prefix: PrefixOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            envvar="MEMSTREAM_KAFKA_DATA_DIR",
            help="Where this worker keeps its shards and keys.",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", envvar="MEMSTREAM_KAFKA_GROUP", help="Consumer group of the workers."
        ),
    ] = None,
    web_host: Annotated[
        str,
        typer.Option(
            "--web-host", envvar="MEMSTREAM_WEB_HOST", help="Address of this worker's HTTP API."
        ),
    ] = "127.0.0.1",
    web_port: Annotated[
        int, typer.Option("--web-port", envvar="MEMSTREAM_WEB_PORT", help="Port of the HTTP API.")
    ] = 6066,
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise",
            envvar="MEMSTREAM_WEB_ADVERTISE",
            help="Host other workers reach this one at (default: --web-host).",
        ),
    ] = None,
    session_timeout: Annotated[
        float | None,
        typer.Option(
            "--session-timeout",
            envvar="MEMSTREAM_KAFKA_SESSION_TIMEOUT",
            help="Seconds before a silent worker's partitions move to the others.",
        ),
    ] = None,
    semantic: Annotated[
        bool,
        typer.Option(
            "--semantic/--no-semantic",
            envvar="MEMSTREAM_SEMANTIC",
            help="Keep search indexes (embeddings, hnswlib, BM25) of the partitions served.",
        ),
    ] = True,
    loglevel: Annotated[
        str, typer.Option("--loglevel", help="debug, info, warning, error.")
    ] = "info",
) -> None:
    """Run a Kafka worker: the sequencer and the projectors of the partitions it is given,
    and the read API (any worker answers for any namespace). Stops cleanly on SIGTERM."""
    from memstream.http.worker import run_worker

    s = _settings(
        bootstrap=bootstrap,
        partitions=partitions,
        prefix=prefix,
        group=group,
        data_dir=data,
        session_timeout=session_timeout,
    )
    run_worker(
        s,
        data_dir=s.data_dir,
        web_host=web_host,
        web_port=web_port,
        advertise=advertise,
        loglevel=loglevel,
        semantic=semantic,
    )


def topics(
    bootstrap: BootstrapOpt = None,
    partitions: PartitionsOpt = None,
    prefix: PrefixOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Only check; create nothing.")] = False,
) -> None:
    """Create the runtime's topics with their configs (or check them)."""
    from memstream.streams.kafka.topics import (
        BrokerUnavailable,
        TopicMisconfigured,
        ensure_topics,
        specs,
    )

    s = _settings(bootstrap=bootstrap, partitions=partitions, prefix=prefix)
    try:
        asyncio.run(ensure_topics(s, create=not check))
    except (BrokerUnavailable, TopicMisconfigured) as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(3) from None
    t = Table("topic", "partitions", "configs", title=f"topics at {s.bootstrap}")
    for spec in specs(s):
        t.add_row(
            spec.name, str(spec.partitions), ", ".join(f"{k}={v}" for k, v in spec.configs.items())
        )
    out.print(t)


def status(
    api: Annotated[
        str,
        typer.Option(
            "--api",
            envvar="MEMSTREAM_API",
            help="Any worker's HTTP API, e.g. http://127.0.0.1:6066.",
        ),
    ] = "http://127.0.0.1:6066",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every worker of the deployment, its partitions, their offsets and lag."""
    try:
        r = httpx.get(f"{api.rstrip('/')}/v1/status", params={"cluster": "1"}, timeout=15)
        r.raise_for_status()
    except httpx.HTTPError as e:
        err.print(f"[red]error:[/red] no worker answered at {api}: {e}")
        raise typer.Exit(3) from None
    data = r.json()
    if json_out:
        sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
        return
    t = Table("worker", "partition", "offset", "end", "lag", "state", title="memstream workers")
    for w in data["workers"]:
        if "error" in w:
            t.add_row(w["url"], "-", "-", "-", "-", f"[red]{w['error']}[/red]")
            continue
        for p, st in sorted(w["partitions"].items(), key=lambda kv: int(kv[0])):
            state = "catching up" if st["catching_up"] else "serving"
            t.add_row(w["url"], p, str(st["offset"]), str(st["end"]), str(st["lag"]), state)
    out.print(t)


def broker(
    port: Annotated[int, typer.Option("--port", help="Loopback port to listen on.")] = 9092,
) -> None:
    """Run a local Kafka-protocol test broker (in memory; for trials and tests, not data)."""
    from memstream.streams.kafka.broker import start_broker

    b = start_broker(port)
    err.print(
        f"broker listening on {b.bootstrap} (in memory: stopping it loses every topic); Ctrl-C stops it"
    )
    try:
        while b.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(topics)
    app.command()(status)
    app.command()(broker)
