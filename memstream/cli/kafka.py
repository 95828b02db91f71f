"""CLI commands of the Kafka runtime: ``worker``, ``topics``, ``status`` and ``broker``.

Every setting also reads a
``MEMSTREAM_KAFKA_*`` environment variable (``BOOTSTRAP``, ``PARTITIONS``, ``GROUP``,
``DATA_DIR``...), which is how docker-compose configures the workers. The options are
declared once, as fields of :class:`KafkaSettings` and :mod:`memstream.settings`.
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
from rich.table import Table

from memstream.settings import SearchSettings, WorkerSettings
from memstream.streams.kafka.settings import KafkaSettings

from .common import default, err, out, setting

BootstrapOpt = Annotated[str | None, setting(KafkaSettings, "bootstrap", "--bootstrap")]
PartitionsOpt = Annotated[int | None, setting(KafkaSettings, "partitions", "--partitions")]
PrefixOpt = Annotated[str | None, setting(KafkaSettings, "prefix", "--prefix")]


def _settings(**kw: Any) -> KafkaSettings:
    return KafkaSettings.from_env(**kw)


def worker(
    bootstrap: BootstrapOpt = None,
    partitions: PartitionsOpt = None,
    prefix: PrefixOpt = None,
    data: Annotated[Path | None, setting(KafkaSettings, "data_dir", "--data")] = None,
    group: Annotated[str | None, setting(KafkaSettings, "group", "--group")] = None,
    web_host: Annotated[str, setting(WorkerSettings, "web_host", "--web-host")] = default(
        WorkerSettings, "web_host"
    ),
    web_port: Annotated[int, setting(WorkerSettings, "web_port", "--web-port")] = default(
        WorkerSettings, "web_port"
    ),
    advertise: Annotated[
        str | None, setting(WorkerSettings, "web_advertise", "--advertise")
    ] = None,
    session_timeout: Annotated[
        float | None, setting(KafkaSettings, "session_timeout", "--session-timeout")
    ] = None,
    semantic: Annotated[
        bool, setting(SearchSettings, "semantic", "--semantic/--no-semantic")
    ] = default(SearchSettings, "semantic"),
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
    api: Annotated[str, setting(WorkerSettings, "api", "--api")] = default(WorkerSettings, "api"),
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
