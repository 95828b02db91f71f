"""The ``memstream`` command line.

Every command works against a store directory (``--store``, default ``$MEMSTREAM_STORE``
or ``./memstream-data``). When a ``memstream serve`` process holds that store (its lock is
taken and ``<store>/server.json`` names a server that answers), the command goes through
that server over HTTP instead: DuckDB allows one writer, so the CLI must not open a store
a server holds. ``--url`` (or ``$MEMSTREAM_URL``) names a server explicitly.

Every command prints tables for people, or JSON on stdout with ``--json`` (progress bars
and errors go to stderr, so stdout stays parseable). Exit codes:

- 0: success;
- 1: something was rejected, is missing, or failed verification;
- 2: bad input (malformed events, invalid options or paths); nothing was appended;
- 3: the store or server is unavailable (locked, unreachable, not caught up).

Heavy modules (FastAPI, uvicorn, the benchmark suites; never torch) are imported inside
the commands that need them, so the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from memstream.errors import (
    MalformedEvent,
    NotCaughtUp,
    ProjectorFailed,
    Rejected,
    StoreLocked,
    StoreReadOnly,
)
from memstream.schemas.codec import DEFAULT_MAX_EVENT_BYTES, EventCodec
from memstream.schemas.events import default_registry
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, Memory, SearchHit, Version
from memstream.sdk import MemoryStore
from memstream.streams.embedded import LOG_FILE, MANIFEST, FollowerFailed, ProgressFactory

if TYPE_CHECKING:
    from memstream.client import HttpMemoryStore

__all__ = [
    "app",
    "audit_table",
    "history_table",
    "main",
    "memory_table",
    "outcomes_table",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3

DEFAULT_STORE = Path("memstream-data")
DEFAULT_PORT = 8765
BENCH_SUITES = ("ingest", "project", "replay", "search", "kafka")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="memstream",
    help="An event-sourced memory store for LLM agents. Start with `memstream serve --demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(
    help="The audit trail: who did what to which memory, when, why, and the outcome. "
    "`memstream audit verify` checks the log's hash chain.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(audit_app, name="audit")

# -- shared options ------------------------------------------------------------------------------

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="MEMSTREAM_STORE",
        help="Store directory (goes through its server when one holds it).",
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="MEMSTREAM_URL",
        help="URL of a running memstream server (default: the one holding --store, if any).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
MaxEventOpt = Annotated[
    int | None,
    typer.Option(
        "--max-event-bytes",
        envvar="MEMSTREAM_MAX_EVENT_BYTES",
        min=1,
        help=f"Largest event payload accepted, in bytes (default {DEFAULT_MAX_EVENT_BYTES}).",
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="A log offset, or an RFC 3339 time with timezone."),
]
MinOffsetOpt = Annotated[
    int | None,
    typer.Option("--min-offset", min=0, help="Wait (bounded) until this offset is projected."),
]


# -- errors --------------------------------------------------------------------------------------


class CliError(Exception):
    """An error the CLI reports as a sentence and an exit code (and JSON with --json)."""

    def __init__(self, message: str, code: int, body: dict[str, Any] | None = None):
        self.code = code
        self.body = {"error": "error", "message": message, **(body or {})}
        super().__init__(message)


def _print_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
    sys.stdout.flush()


def _classify(e: BaseException) -> CliError | None:
    """The exit code and JSON body of an exception a user can meet; None for bugs."""
    from memstream.client import ServerError, ServerUnavailable
    from memstream.server import ServeError

    if isinstance(e, CliError):
        return e
    if isinstance(e, MalformedEvent):
        return CliError(str(e), EXIT_BAD_INPUT, e.to_dict())
    if isinstance(e, Rejected):
        public = e.outcome.public() if isinstance(e.outcome, Outcome) else e.outcome
        return CliError(str(e), EXIT_REJECTED, {"error": "rejected", "outcome": public})
    if isinstance(e, NotCaughtUp):
        body = {"error": "not_caught_up", "wanted": e.wanted, "reached": e.reached}
        return CliError(str(e), EXIT_UNAVAILABLE, body)
    unavailable = (
        StoreLocked, ProjectorFailed, FollowerFailed, ServerUnavailable, ServerError, ServeError,
    )  # fmt: skip
    if isinstance(e, unavailable):
        return CliError(str(e), EXIT_UNAVAILABLE, {"error": type(e).__name__})
    from memstream.streams.kafka.producer import NotWritten, OutcomePending

    if isinstance(e, NotWritten | OutcomePending):  # the Kafka runtime: broker or workers
        return CliError(str(e), EXIT_UNAVAILABLE, {"error": type(e).__name__})
    if isinstance(e, StoreReadOnly):
        return CliError(str(e), EXIT_BAD_INPUT, {"error": "read_only"})
    if isinstance(e, FileExistsError | FileNotFoundError | NotADirectoryError | PermissionError):
        return CliError(str(e), EXIT_BAD_INPUT, {"error": type(e).__name__})
    if isinstance(e, ValueError | TypeError):
        return CliError(str(e), EXIT_BAD_INPUT, {"error": "bad_input"})
    return None


@contextlib.contextmanager
def _reported(json_out: bool) -> Iterator[None]:
    """Turn the errors a user can meet into a message on stderr (plus JSON) and an exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        err.print("interrupted", style="yellow")
        raise typer.Exit(130) from None
    except Exception as e:
        failure = _classify(e)
        if failure is None:
            raise
        err.print(Text("error: ", style="bold red") + Text(str(failure)), soft_wrap=True)
        if json_out:
            _print_json(failure.body)
        raise typer.Exit(failure.code) from None


# -- where the store is --------------------------------------------------------------------------


def _connect(url: str, actor: str) -> HttpMemoryStore:
    from memstream.client import HttpMemoryStore

    return HttpMemoryStore.connect(url, actor=actor)


def _via_server(root: Path, actor: str, locked: StoreLocked) -> HttpMemoryStore:
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
        client = _connect(info.url, actor)
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
def _open(
    store: Path,
    url: str | None,
    *,
    create: bool = False,
    max_event_bytes: int | None = None,
    actor: str = "cli",
    semantic: bool = False,
) -> Iterator[MemoryStore | HttpMemoryStore]:
    """The store to work on: a server (``--url``, or the one holding ``store``) or the
    directory itself, opened for the duration of the command.

    An embedded store is opened without its search indexes unless ``semantic`` (only
    ``search`` needs them): they catch up from their checkpoint the next time they are
    opened, so other commands neither load the model nor wait for embeddings."""
    if url:
        with _connect(url, actor) as client:
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
        embedded = MemoryStore.open(root, actor=actor, semantic=semantic, **options)
    except StoreLocked as locked:
        with _via_server(root, actor, locked) as client:
            yield client
        return
    with embedded:
        yield embedded


@contextlib.contextmanager
def _kafka_store(bootstrap: str, actor: str = "cli") -> Iterator[Any]:
    """The Kafka runtime as a publishing target (its workers decide; outcomes awaited)."""
    from memstream.kafka import KafkaMemoryStore

    with KafkaMemoryStore.connect(bootstrap, actor=actor) as target:
        yield target


@contextlib.contextmanager
def _progress(enabled: bool = True) -> Iterator[ProgressFactory]:
    """A rich progress display on stderr, as the ``progress`` factory the store takes."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
    )
    with bar:

        def factory(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield factory


def _point(value: str | None, option: str) -> datetime | int | None:
    from memstream.client import parse_point

    if value is None:
        return None
    try:
        return parse_point(value, option)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


def _records(root: Path) -> int:
    """Records in the log of the store at ``root``."""
    from memstream.streams.log import EmbeddedLog

    log = EmbeddedLog(root / LOG_FILE, create=False)
    try:
        return log.next_offset
    finally:
        log.close()


# -- rendering -----------------------------------------------------------------------------------


def _when(value: datetime | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1_000_000, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _clip(text: str | None, width: int = 80) -> Text:
    if text is None:
        return Text("(erased)", style="dim")
    return Text(text if len(text) <= width else text[: width - 1] + "…")


def memory_table(m: Memory) -> Table:
    """A memory as a two-column table (field, value)."""
    t = Table(title=f"memory {m.memory_id}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    state = m.state + (" (frozen)" if m.frozen else "")
    parents = ", ".join(f"{p.memory_id} v{p.version}" for p in m.parents)
    rows: list[tuple[str, str | Text]] = [
        ("namespace", m.namespace),
        ("subject", m.subject),
        ("kind", m.kind),
        ("state", state),
        ("version", f"{m.version} (revision {m.revision})"),
        ("text", _clip(m.text, 400)),
        ("tags", ", ".join(m.tags)),
        ("metadata", msgspec.json.encode(m.metadata).decode() if m.metadata else ""),
        ("parents", parents),
        ("source", m.source or ""),
        ("owner", m.owner or ""),
        ("visibility", m.visibility),
        ("created", f"{_when(m.created_at)} by {m.created_by}"),
        ("updated", f"{_when(m.updated_at)} by {m.updated_by}"),
        ("offset", str(m.offset)),
    ]
    for k, v in rows:
        t.add_row(k, v if isinstance(v, Text) else Text(v))
    return t


def hits_table(hits: Sequence[SearchHit], title: str) -> Table:
    """Search hits: rank, scores, memory id, namespace, state, text."""
    t = Table(title=title, title_justify="left")
    for name in ("#", "score", "semantic", "keyword", "memory", "namespace", "state", "text"):
        t.add_column(
            name, justify="right" if name in ("#", "score", "semantic", "keyword") else "left"
        )
    for i, h in enumerate(hits, 1):
        m = h.memory
        t.add_row(
            str(i), f"{h.score:.4f}",
            "" if h.semantic_score is None else f"{h.semantic_score:.3f}",
            "" if h.keyword_score is None else f"{h.keyword_score:.2f}",
            m.memory_id, m.namespace, m.state, _clip(m.text, 70),
        )  # fmt: skip
    return t


def history_table(versions: Sequence[Version], title: str) -> Table:
    """A version chain: one row per version, merge parents named."""
    t = Table(title=title, title_justify="left")
    for col in ("memory", "v", "op", "actor", "recorded at", "offset", "from", "text"):
        t.add_column(col, no_wrap=col not in ("text", "from"))
    for v in versions:
        origin = ", ".join(f"{p.memory_id} v{p.version}" for p in v.parents)
        if v.rolled_back_to is not None:
            origin = f"content of v{v.rolled_back_to}"
        t.add_row(
            Text(v.memory_id),
            str(v.version),
            v.op,
            Text(v.actor),
            _when(v.recorded_at),
            str(v.offset),
            Text(origin),
            _clip(v.text),
        )
    return t


def audit_table(entries: Sequence[AuditEntry], title: str) -> Table:
    """Audit entries: who, what, when, why, and the outcome."""
    t = Table(title=title, title_justify="left")
    for col in ("offset", "recorded at", "actor", "operation", "memory", "outcome", "why"):
        t.add_column(col, no_wrap=col in ("offset", "recorded at", "operation"))
    for e in entries:
        if e.status == "accepted":
            outcome = Text(f"accepted → {e.state} v{e.version}", style="green")
        else:
            outcome = Text(f"rejected ({e.code}): {e.reason}", style="red")
        t.add_row(
            str(e.offset),
            _when(e.recorded_at),
            Text(e.actor),
            e.type,
            Text(e.memory_id),
            outcome,
            Text(e.why or ""),
        )
    return t


def outcomes_table(outcomes: Sequence[Outcome], title: str = "outcomes") -> Table:
    """Outcomes of appended events: where each landed and what the lifecycle decided."""
    t = Table(title=title, title_justify="left")
    for col in ("#", "type", "memory", "status", "version", "state", "offset", "reason"):
        t.add_column(col, no_wrap=col != "reason")
    for i, o in enumerate(outcomes):
        status = Text(o.status, style="green" if o.accepted else "red")
        if o.duplicate:
            status.append(" (duplicate)", style="dim")
        reason = f"{o.code}: {o.reason}" if o.code else ""
        t.add_row(
            str(i),
            o.type,
            Text(o.memory_id),
            status,
            "" if o.version is None else str(o.version),
            o.state or "",
            str(o.offset),
            Text(reason),
        )
    return t


# -- the app -------------------------------------------------------------------------------------


def _version_callback(value: bool) -> None:
    if value:
        from memstream import __version__

        out.print(f"memstream {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """An event-sourced memory store for LLM agents."""


@app.command()
def serve(
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(envvar="MEMSTREAM_PORT", min=0, max=65535, help="Port; 0 picks a free one."),
    ] = DEFAULT_PORT,
    demo: Annotated[
        bool, typer.Option("--demo", help="Run the demo against this server once it listens.")
    ] = False,
    demo_only: Annotated[
        bool, typer.Option("--demo-only", help="Run the demo, then stop the server.")
    ] = False,
    max_event_bytes: MaxEventOpt = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-body-bytes",
            envvar="MEMSTREAM_MAX_BODY_BYTES",
            min=1,
            help="Largest request body, in bytes; 413 beyond (default: the larger of 32 MiB "
            "and 8 x max-event-bytes).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the store and its HTTP API in this process until Ctrl-C or SIGTERM."""
    from memstream import server as srv

    with _reported(json_out):

        def listening(info: srv.ServerInfo) -> None:
            if json_out:
                _print_json({"event": "listening", **info.to_dict()})

        on_ready = None
        if demo or demo_only:

            def on_ready(info: srv.ServerInfo) -> None:
                from memstream.demo import run_demo

                result = run_demo(
                    info.url,
                    console=None if json_out else out,
                    store=Path(info.store),
                    serving=not demo_only,
                )
                if json_out:
                    _print_json({"event": "demo", **result})

        code = srv.run(
            store,
            host=host,
            port=port,
            max_event_bytes=max_event_bytes,
            max_body_bytes=max_body_bytes,
            log_level=log_level.lower(),
            access_log=access_log,
            on_listening=listening,
            on_ready=on_ready,
            stop_after_ready=demo_only,
        )
        if json_out:
            _print_json({"event": "stopped", "exit_code": code})
    raise typer.Exit(code)


def _split_events(data: bytes) -> tuple[list[bytes], bool, list[int] | None]:
    """Split input into event documents: (docs, single, line numbers for JSON Lines).

    Accepts one JSON object, a JSON array of objects, or JSON Lines (one object a line).
    """
    stripped = data.strip()
    if stripped[:1] == b"[":
        try:
            return (
                [bytes(r) for r in msgspec.json.decode(stripped, type=list[msgspec.Raw])],
                False,
                None,
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise MalformedEvent(f"not valid JSON ({e})") from None
    if stripped[:1] != b"{":
        EventCodec(default_registry()).decode(stripped)  # raises the codec's own message
        raise MalformedEvent("expected a JSON object, an array of objects, or JSON Lines")
    try:
        single: bytes | None = bytes(msgspec.json.decode(stripped, type=msgspec.Raw))
    except msgspec.DecodeError:
        single = None  # more than one document: JSON Lines
    if single is not None:
        return [single], True, None
    docs: list[bytes] = []
    lines: list[int] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            msgspec.json.decode(line, type=msgspec.Raw)
        except msgspec.DecodeError as e:
            raise MalformedEvent(
                f"line {number} is not valid JSON ({e})", index=len(docs)
            ) from None
        docs.append(line.strip())
        lines.append(number)
    return docs, False, lines


def _relocate(e: MalformedEvent, start: int, lines: list[int] | None) -> MalformedEvent:
    """A chunk's error, with the index (and line) in the whole input."""
    if e.index is None:
        return e
    index = e.index + start
    detail = e.detail + (f" (line {lines[index]})" if lines else "")
    return MalformedEvent(detail, field=e.field, index=index)


@app.command()
def publish(
    source: Annotated[
        str, typer.Argument(help="File of events (JSON object, array, or JSON Lines); - is stdin.")
    ] = "-",
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    max_event_bytes: MaxEventOpt = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Events per append (each batch is atomic).")
    ] = 1000,
    kafka: Annotated[
        str | None,
        typer.Option(
            "--kafka",
            envvar="MEMSTREAM_KAFKA_BOOTSTRAP",
            help="Publish to the Kafka runtime at these brokers (host:port) instead of a store.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Append events; print their outcomes. Exit 1 if any was rejected, 2 if malformed."""
    with _reported(json_out):
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            path = Path(source)
            if not path.is_file():
                raise CliError(f"no such file: {path}", EXIT_BAD_INPUT, {"error": "no_file"})
            data = path.read_bytes()
        docs, single, lines = _split_events(data)
        if not docs:
            raise MalformedEvent("no events in the input")
        if single:
            chunks = [(0, docs[0])]
        else:
            chunks = [
                (i, b"[" + b",".join(docs[i : i + batch_size]) + b"]")
                for i in range(0, len(docs), batch_size)
            ]
        # Validate everything before appending anything: bad input appends nothing.
        codec = EventCodec(default_registry(), max_event_bytes or DEFAULT_MAX_EVENT_BYTES)
        for start, body in chunks:
            try:
                codec.decode(body)
            except MalformedEvent as e:
                raise _relocate(e, start, lines) from None
        outcomes: list[Outcome] = []
        opened = (
            _kafka_store(kafka)
            if kafka
            else _open(store, url, create=True, max_event_bytes=max_event_bytes)
        )
        with opened as target:
            with _progress(enabled=len(chunks) > 1) as progress:
                tick = progress("publishing", len(docs))
                for start, body in chunks:
                    try:
                        got = target.publish_json(body)
                    except MalformedEvent as e:
                        moved = _relocate(e, start, lines)
                        if start:
                            moved = MalformedEvent(
                                f"{moved.detail} (the {start} events before it were appended)",
                                field=moved.field,
                                index=moved.index,
                            )
                        raise moved from None
                    outcomes.extend(got)
                    tick(len(got))
        rejected = [o for o in outcomes if not o.accepted]
        if json_out:
            _print_json(
                {
                    "outcomes": [o.public() for o in outcomes],
                    "accepted": len(outcomes) - len(rejected),
                    "rejected": len(rejected),
                }
            )
        else:
            shown = outcomes if len(outcomes) <= 50 else rejected[:50]
            if shown:
                out.print(outcomes_table(shown, "outcomes" if shown is outcomes else "rejected"))
            out.print(
                f"{len(outcomes) - len(rejected)} accepted, {len(rejected)} rejected"
                + (f"; last offset {max(o.offset for o in outcomes)}" if outcomes else "")
            )
    raise typer.Exit(EXIT_REJECTED if rejected else EXIT_OK)


@app.command()
def get(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    version: Annotated[int | None, typer.Option(min=1, help="A version of the content.")] = None,
    as_of: AsOfOpt = None,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a memory now, at a version, or as of a time or an offset."""
    with _reported(json_out):
        point = _point(as_of, "--as-of")
        with _open(store, url) as target:
            m = target.get(memory_id, version=version, as_of=point, min_offset=min_offset)
        if m is None:
            where = f" at version {version}" if version is not None else ""
            where += f" as of {as_of}" if as_of is not None else ""
            raise CliError(
                f"memory {memory_id} does not exist{where}; check the id, or look at "
                f"`memstream audit --memory {memory_id}`",
                EXIT_REJECTED,
                {"error": "not_found", "memory_id": memory_id},
            )
        if json_out:
            _print_json(m)
        else:
            out.print(memory_table(m))


@app.command()
def history(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    parents: Annotated[
        bool, typer.Option("--parents/--no-parents", help="Include merge parents' chains.")
    ] = True,
    as_of: AsOfOpt = None,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a memory's version chain, with the chains of the memories merged into it."""
    with _reported(json_out):
        point = _point(as_of, "--as-of")
        with _open(store, url) as target:
            versions = target.history(
                memory_id, include_parents=parents, as_of=point, min_offset=min_offset
            )
        if not versions:
            raise CliError(
                f"memory {memory_id} has no versions"
                + (f" as of {as_of}" if as_of is not None else "")
                + f"; check the id, or look at `memstream audit --memory {memory_id}`",
                EXIT_REJECTED,
                {"error": "not_found", "memory_id": memory_id},
            )
        if json_out:
            _print_json(versions)
        else:
            out.print(history_table(versions, f"version chain of {memory_id}"))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for (by meaning and by words).")],
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Only this namespace (repeat).")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000, help="How many hits.")] = 10,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Has any of these tags (repeat).")
    ] = None,
    all_tags: Annotated[
        list[str] | None, typer.Option("--all-tags", help="Has all of these tags (repeat).")
    ] = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only these states (repeat).")
    ] = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived", help="Also archived memories.")
    ] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Brute force (the reference).")] = False,
    alpha: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Semantic weight: 1 semantic only, 0 keywords only."),
    ] = None,
    as_of: AsOfOpt = None,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Search memories by meaning and by words (fused), with filters."""
    with _reported(json_out):
        point = _point(as_of, "--as-of")
        with _open(store, url, semantic=True) as target:
            if min_offset is None:
                target.flush()  # the indexes catch up first (embedding what they lack)
            hits = target.search(
                query, namespaces=namespace or None, k=k, tags_any=tag or None,
                tags_all=all_tags or None, states=state or None,
                include_archived=include_archived, exact=exact, alpha=alpha, as_of=point,
                min_offset=min_offset,
            )  # fmt: skip
        if json_out:
            _print_json(hits)
        else:
            out.print(hits_table(hits, f"search: {query}"))


@audit_app.callback()
def audit(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Only this memory id.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    status: Annotated[str | None, typer.Option(help="accepted or rejected.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time (recorded_at >=).")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time (recorded_at <=).")] = None,
    after: Annotated[int | None, typer.Option(help="Offset cursor (exclusive).")] = None,
    as_of: AsOfOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Entries per page.")] = 100,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List audit entries in log order (filters combine)."""
    if ctx.invoked_subcommand is not None:
        return
    with _reported(json_out):
        if status is not None and status not in ("accepted", "rejected"):
            raise typer.BadParameter("must be accepted or rejected", param_hint="--status")
        since_t, until_t = _point(since, "--since"), _point(until, "--until")
        for name, value in (("--since", since_t), ("--until", until_t)):
            if isinstance(value, int):
                raise typer.BadParameter(
                    "expected a time; use --after for offsets", param_hint=name
                )
        point = _point(as_of, "--as-of")
        entries: list[AuditEntry] = []
        cursor = after
        with _open(store, url) as target:
            while True:
                page = target.audit(
                    namespace=namespace,
                    memory_id=memory,
                    actor=actor,
                    type=type_,
                    status=status,
                    since=since_t,  # type: ignore[arg-type]
                    until=until_t,  # type: ignore[arg-type]
                    after=cursor,
                    as_of=point,
                    limit=limit,
                    min_offset=min_offset,
                )
                entries.extend(page.entries)
                cursor = page.next_after
                if not all_pages or cursor is None:
                    break
        if json_out:
            _print_json({"entries": entries, "next_after": cursor})
        else:
            out.print(audit_table(entries, "audit"))
            if cursor is not None:
                out.print(f"more entries: pass --after {cursor} (or --all)")


@audit_app.command("verify")
def audit_verify(
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute the log's hash chain from its stored bytes; exit 1 at the first break."""
    with _reported(json_out):
        with _open(store, url) as target:
            head = target.head
            if isinstance(target, MemoryStore):
                with _progress(enabled=not json_out and head > 10_000) as progress:
                    brk = target.verify(progress("verifying", head + 1))
            else:
                brk = target.verify()
        result = {
            "ok": brk is None,
            "offset": brk.offset if brk else None,
            "reason": brk.reason if brk else None,
            "head": head,
        }
        if json_out:
            _print_json(result)
        elif brk is None:
            out.print(f"[green]OK[/green]: the hash chain of {head + 1} records is intact")
        else:
            err.print(Text(f"BROKEN at offset {brk.offset}: {brk.reason}", style="bold red"))
    raise typer.Exit(EXIT_OK if brk is None else EXIT_REJECTED)


@app.command()
def replay(
    into: Annotated[
        Path, typer.Option("--into", help="New (or empty) directory for the replayed store.")
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Last offset (inclusive) or RFC 3339 time; default: all."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild every projection from the log, up to a point, into a new read-only store."""
    with _reported(json_out):
        point = _point(to, "--to")
        target_dir = into.expanduser().absolute()
        with _open(store, url) as source, _progress() as progress:
            replayed = source.replay(target_dir, to=point, progress=progress)
            with replayed:
                head = replayed.head
        result = {"into": str(target_dir), "to": to, "head": head, "records": head + 1}
        if json_out:
            _print_json(result)
        else:
            out.print(
                f"replayed {head + 1} records (offsets 0..{head}) into {target_dir}; query it "
                f"with e.g. `memstream audit --store {target_dir}`"
            )


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="New (or empty) directory for the copy.")],
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A consistent copy of the log and keys (safe while a server writes); open it to restore."""
    with _reported(json_out):
        target_dir = dest.expanduser().absolute()
        with _open(store, url) as target:
            written = target.backup(target_dir)
        records = _records(written)
        result = {"dest": str(written), "records": records, "head": records - 1}
        if json_out:
            _print_json(result)
        else:
            out.print(
                f"backed up {records} records to {written}; restore by opening it: "
                f"`memstream serve --store {written}`"
            )


@app.command()
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

    with _reported(json_out):
        try:
            with _progress(not json_out) as progress:
                result = run_reembed(store_dir, model, batch_size=batch_size, progress=progress)
        except StoreBusy as e:
            raise CliError(str(e), EXIT_UNAVAILABLE, {"error": "store_busy"}) from None
        if json_out:
            _print_json(result.to_dict())
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


@app.command()
def demo(
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    actor: Annotated[str, typer.Option(help="The agent the demo acts as.")] = "assistant",
    namespace: Annotated[
        str, typer.Option(help="Namespace of the demo's memories.")
    ] = "user/alice",
    json_out: JsonOpt = False,
) -> None:
    """Show memstream at work over HTTP: create, revise, archive, merge, a rejection,
    the version chain, the audit trail, verify. Starts a server for the store if none runs."""
    from memstream.demo import run_demo

    def go(server_url: str, store_dir: Path | None, serving: bool) -> None:
        result = run_demo(
            server_url,
            console=None if json_out else out,
            store=store_dir,
            serving=serving,
            actor=actor,
            namespace=namespace,
        )
        if json_out:
            _print_json(result)

    with _reported(json_out):
        if url:
            go(url, None, True)
            return
        root = store.expanduser().absolute()
        from memstream.server import read_server_info
        from memstream.server import run as run_server

        info = read_server_info(root)
        if info is not None:
            from memstream.client import ServerUnavailable

            try:
                _connect(info.url, actor).close()
            except ServerUnavailable:
                info = None
        if info is not None:
            go(info.url, root, True)
            return
        code = run_server(
            root,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            on_ready=lambda i: go(i.url, root, False),
            stop_after_ready=True,
        )
    raise typer.Exit(code)


@app.command()
def bench(
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite", help=f"Suite to run (repeatable): {', '.join(BENCH_SUITES)}; default all."
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
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            envvar="MEMSTREAM_BENCH_CACHE",
            help="Where the search suite keeps its embeddings between runs "
            "(default ~/.cache/memstream/bench).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the benchmarks (ratios against baselines measured in the same run)."""
    with _reported(json_out):
        try:
            from memstream import bench as bench_mod
        except ImportError as e:
            raise CliError(
                f"the benchmark suites are not available in this install ({e})",
                EXIT_UNAVAILABLE,
                {"error": "no_bench"},
            ) from None
        known = tuple(getattr(bench_mod, "SUITES", BENCH_SUITES))
        suites = list(suite) if suite else list(known)
        unknown = [s for s in suites if s not in known]
        if unknown:
            raise typer.BadParameter(
                f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(known)}",
                param_hint="--suite",
            )
        if scale <= 0:
            raise typer.BadParameter("must be greater than 0", param_hint="--scale")
        result = bench_mod.run(
            suites, out_dir, scale, repeats=repeats, docs=update_docs, cache_dir=cache_dir
        )
        if json_out:
            _print_json(result)
        else:
            from rich.pretty import Pretty

            out.print(Pretty(result))
            out.print(f"results written under {out_dir}")


def _kafka_commands() -> None:
    from memstream.cli_kafka import register

    register(app)


_kafka_commands()


def main() -> None:
    """Entry point of the ``memstream`` script and of ``python -m memstream``."""
    app(prog_name="memstream")
