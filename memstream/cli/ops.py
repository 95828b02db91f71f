"""Running things: ``serve``, ``demo``, ``reembed`` and ``bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memstream.settings import BenchSettings, ServeSettings

from .common import (
    DEFAULT_STORE,
    EXIT_UNAVAILABLE,
    CliError,
    JsonOpt,
    MaxEventOpt,
    ReadOnlyOpt,
    StoreOpt,
    UrlOpt,
    default,
    err,
    out,
    print_json,
    progress_bar,
    reported,
    setting,
)
from .connect import connect, open_store

BENCH_SUITES = (
    "ingest", "project", "replay", "open", "search", "kafka", "erasure", "sensitive", "pubsub",
)  # fmt: skip


def serve(
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, setting(ServeSettings, "port")] = default(ServeSettings, "port"),
    demo: Annotated[
        bool, typer.Option("--demo", help="Run the demo against this server once it listens.")
    ] = False,
    demo_only: Annotated[
        bool, typer.Option("--demo-only", help="Run the demo, then stop the server.")
    ] = False,
    max_event_bytes: MaxEventOpt = None,
    max_body_bytes: Annotated[
        int | None, setting(ServeSettings, "max_body_bytes", "--max-body-bytes")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    read_only: ReadOnlyOpt = False,
    auth: Annotated[bool, setting(ServeSettings, "auth", "--auth/--no-auth")] = default(
        ServeSettings, "auth"
    ),
    json_out: JsonOpt = False,
) -> None:
    """Run the store and its HTTP API in this process until Ctrl-C or SIGTERM."""
    from memstream import server as srv

    with reported(json_out):

        def admin_token(token: str) -> None:
            if json_out:
                print_json({"event": "admin_token", "principal": "admin", "token": token})
            else:
                _show_admin_token(token)

        def listening(info: srv.ServerInfo) -> None:
            if json_out:
                print_json({"event": "listening", **info.to_dict()})

        on_ready = None
        if demo or demo_only:

            def on_ready(info: srv.ServerInfo) -> None:
                from memstream.demo import run_demo

                result = run_demo(
                    info.url,
                    token=info.admin_token or info.token,
                    console=None if json_out else out,
                    store=Path(info.store),
                    serving=not demo_only,
                )
                if json_out:
                    print_json({"event": "demo", **result})

        code = srv.run(
            store,
            host=host,
            port=port,
            max_event_bytes=max_event_bytes,
            max_body_bytes=max_body_bytes,
            log_level=log_level.lower(),
            access_log=access_log,
            read_only=read_only,
            auth=auth,
            on_admin_token=admin_token,
            on_listening=listening,
            on_ready=on_ready,
            stop_after_ready=demo_only,
        )
        if json_out:
            print_json({"event": "stopped", "exit_code": code})
    raise typer.Exit(code)


def reembed(
    store_dir: Annotated[Path, typer.Argument(help="The store directory (no server may hold it).")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Local transformers model folder to switch to (default: all-MiniLM-L6-v2).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 64,
    json_out: JsonOpt = False,
) -> None:
    """Embed every live memory with a new model, then switch the store to it.

    Resumable: texts already embedded with that model are skipped. The store keeps its old
    model until every vector is cached; then its vector index is rebuilt for the new one.
    """
    from memstream.reembed import StoreBusy
    from memstream.reembed import reembed as run_reembed

    with reported(json_out):
        try:
            with progress_bar(not json_out) as progress:
                result = run_reembed(store_dir, model, batch_size=batch_size, progress=progress)
        except StoreBusy as e:
            raise CliError(str(e), EXIT_UNAVAILABLE, {"error": "store_busy"}) from None
        if json_out:
            print_json(result.to_dict())
            return
        r = result
        out.print(
            f"re-embedded {r.embedded} of {r.texts} texts with {r.model_id} ({r.dim} dims; "
            f"{r.already_cached} were already cached, {r.model_calls} model batches); the store "
            f"now searches with it (was {r.previous_model_id or 'the default model'}); "
            f"vector index: {r.rebuild.get('indexed')} memories"
            + (f", rebuilt ({r.rebuild['reason']})" if r.rebuild.get("reason") else "")
        )
        if r.supplied_wrong_dim:
            err.print(
                f"{r.supplied_wrong_dim} memories carry producer vectors of another dimension: "
                "they are searchable by keywords only until revised"
            )


def _show_admin_token(token: str) -> None:
    out.print(
        "Created the store's admin principal. Its token, shown this once (keep it; "
        "`memstream token issue` makes more):"
    )
    out.print(f"  {token}", soft_wrap=True)


def demo(
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    actor: Annotated[str, typer.Option(help="The agent the demo acts as.")] = "assistant",
    namespace: Annotated[
        str, typer.Option(help="Namespace of the demo's memories (its own: a rerun adds nothing).")
    ] = "demo/alice",
    json_out: JsonOpt = False,
) -> None:
    """Show memstream at work over HTTP: create, revise, archive, merge, a rejection,
    the version chain, the audit trail, verify. Starts a server for the store if none runs."""
    from memstream.demo import run_demo

    minted: dict[str, str] = {}

    def admin_token(token: str) -> None:
        if json_out:
            minted["admin_token"] = token  # in the demo's one JSON document
        else:
            _show_admin_token(token)

    def go(server_url: str, store_dir: Path | None, serving: bool, token: str | None) -> None:
        result = run_demo(
            server_url,
            token=token,
            console=None if json_out else out,
            store=store_dir,
            serving=serving,
            actor=actor,
            namespace=namespace,
        )
        if json_out:
            print_json({**result, **minted})

    with reported(json_out):
        if url:
            go(url, None, True, None)  # the token in $MEMSTREAM_TOKEN
            return
        root = store.expanduser().absolute()
        from memstream.server import read_server_info
        from memstream.server import run as run_server

        info = read_server_info(root)
        if info is not None:
            from memstream.client import ServerUnavailable

            try:
                connect(info.url, actor, info.token).close()
            except ServerUnavailable:
                info = None
        if info is not None:
            go(info.url, root, True, info.token)  # as the store's owner
            return
        code = run_server(
            root,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            on_admin_token=admin_token,
            on_ready=lambda i: go(i.url, root, False, i.admin_token or i.token),
            stop_after_ready=True,
        )
    raise typer.Exit(code)


def bench(
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite",
            help=f"Suite to run (repeatable): {', '.join(BENCH_SUITES)}; default all but "
            "peers (Mem0 side by side: needs --peer-python).",
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for the results (JSON).")
    ] = Path("docs/bench"),
    scale: Annotated[float, typer.Option(min=0.0, help="Multiplier on the workload sizes.")] = 1.0,
    repeats: Annotated[
        int | None, typer.Option(min=1, help="Runs per measurement (default per suite).")
    ] = None,
    update_docs: Annotated[
        Path | None,
        typer.Option(
            "--update-docs",
            metavar="MARKDOWN",
            help="Replace the summary block of this file (e.g. docs/benchmarks.md).",
        ),
    ] = None,
    cache_dir: Annotated[Path | None, setting(BenchSettings, "cache", "--cache-dir")] = None,
    peer_python: Annotated[
        str | None,
        typer.Option(
            "--peer-python",
            help="Interpreter of an environment with mem0ai installed, for the peers suite "
            "(default $MEMSTREAM_PEER_PYTHON).",
        ),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            min=1,
            help="Events in the pubsub suite's catch-up log (default 1,000,000 times --scale).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the benchmarks (ratios against baselines measured in the same run)."""
    with reported(json_out):
        try:
            from memstream import bench as bench_mod
        except ImportError as e:
            raise CliError(
                f"the benchmark suites are not available in this install ({e})",
                EXIT_UNAVAILABLE,
                {"error": "no_bench"},
            ) from None
        default = tuple(getattr(bench_mod, "SUITES", BENCH_SUITES))
        known = (*default, *getattr(bench_mod, "OPTIONAL_SUITES", ()))
        suites = list(suite) if suite else list(default)
        unknown = [s for s in suites if s not in known]
        if unknown:
            raise typer.BadParameter(
                f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(known)}",
                param_hint="--suite",
            )
        if scale <= 0:
            raise typer.BadParameter("must be greater than 0", param_hint="--scale")
        try:
            result = bench_mod.run(
                suites, out_dir, scale, repeats=repeats, docs=update_docs, cache_dir=cache_dir,
                peer_python=peer_python, events=events,
            )  # fmt: skip
        except bench_mod.PeerMissing as e:  # nothing ran: how to install Mem0
            err.print(str(e))
            return
        if json_out:
            print_json(result)
        else:
            from rich.pretty import Pretty

            out.print(Pretty(result))
            out.print(f"results written under {out_dir}")


def checkpoint(
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Persist every projection and index now, and rewrite what an erase left on disk.

    An erase does this by itself about a second later, and closing the store does it too;
    run it to be sure, e.g. before copying the store's directory.
    """
    with reported(json_out):
        with open_store(store, url) as target:
            result = target.checkpoint()
        if json_out:
            print_json(result)
        else:
            out.print(
                f"checkpointed at offset {result['offset']} in {result['seconds']:.2f} s: "
                "projections saved, nothing of an erased memory left on disk"
            )
