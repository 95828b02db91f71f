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
    auth: Annotated[bool, setting(WorkerSettings, "auth", "--auth/--no-auth")] = default(
        WorkerSettings, "auth"
    ),
    cluster_token: Annotated[
        str | None,
        setting(
            WorkerSettings,
            "cluster_token",
            "--cluster-token",
            help="The secret the workers of one deployment authenticate each other with (the "
            "same on every worker, 32+ characters; prefer the variable to the option, which "
            "other users of the machine can see). Required with --auth.",
        ),
    ] = None,
) -> None:
    """Run a Kafka worker: the sequencer and the projectors of the partitions it is given,
    and the read API (any worker answers for any namespace). Stops cleanly on SIGTERM."""
    from memstream.http.worker import check_auth, run_worker
    from memstream.settings import SettingsError

    try:
        check_auth(auth, cluster_token)
    except SettingsError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
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
        auth=auth,
        cluster_token=cluster_token,
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
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="MEMSTREAM_TOKEN",
            help="Bearer token for the workers (a principal's token, or the cluster token).",
        ),
    ] = None,
) -> None:
    """Every worker of the deployment, its partitions, their offsets and lag."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(
            f"{api.rstrip('/')}/v1/status", params={"cluster": "1"}, headers=headers, timeout=15
        )
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


def admin_token(
    bootstrap: BootstrapOpt = None,
    partitions: PartitionsOpt = None,
    prefix: PrefixOpt = None,
    name: Annotated[str, typer.Option("--name", help="The admin principal.")] = "admin",
) -> None:
    """Kafka runtime: make a principal admin of the whole deployment and print a new token
    for it, once. Appends through the requests topic (whoever may produce there is trusted
    like a store's owner): the principal and its grant of admin on * if missing, and a token."""
    from memstream.errors import Rejected
    from memstream.kafka import issue_admin_token
    from memstream.streams.kafka.policy import PolicyNotReady
    from memstream.streams.kafka.producer import NotWritten, OutcomePending

    s = _settings(bootstrap=bootstrap, partitions=partitions, prefix=prefix)
    try:
        _, token, made = issue_admin_token(s, name)
    except (ValueError, Rejected, NotWritten, OutcomePending, PolicyNotReady) as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(3) from None
    for line in made:
        err.print(f"appended: {line}")
    err.print(f"the token of {name} (shown once, keep it; `memstream token issue` makes more):")
    sys.stdout.write(token + "\n")


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
