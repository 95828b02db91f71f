"""What every command shares: the app, the consoles, the common options, exit codes, and
how errors become a message and an exit code."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from memstream.errors import (
    LogTampered,
    MalformedEvent,
    NotCaughtUp,
    ProjectorFailed,
    RecordCorrupt,
    Rejected,
    SearchDisabled,
    StoreLocked,
    StoreReadOnly,
    SubscriptionClosed,
    TermsViolated,
    UnknownMemory,
    UnknownSubscription,
    Unsupported,
)
from memstream.settings import CliSettings
from memstream.streams.embedded import ProgressFactory
from memstream.streams.runner import ProcessorFailed
from memstream.streams.settings import Settings, StoreSettings, env_var
from memstream.wire import not_found_body, rejected_body

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
if not out.is_terminal:
    # Piped or redirected: no terminal to fit, so nothing wraps at 80 columns (or $COLUMNS)
    # and no table squeezes or drops a column; each line is as long as its content.
    out.width = 1_000_000

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


def setting(model: type[Settings], field: str, *param_decls: str, **kw: Any) -> Any:
    """The option of a declared setting: its environment variable, its help and its
    limits come from the field (``help=`` overrides the help). The default is the
    command's: :func:`default` for the field's, or None to leave it to the settings."""
    info = model.model_fields[field]
    for bound in info.metadata:
        if getattr(bound, "ge", None) is not None:
            kw.setdefault("min", bound.ge)
        if getattr(bound, "le", None) is not None:
            kw.setdefault("max", bound.le)
    kw.setdefault("help", info.description)
    return typer.Option(*param_decls, envvar=env_var(model, field), **kw)


def default(model: type[Settings], field: str) -> Any:
    """A declared setting's default."""
    return model.model_fields[field].default


DEFAULT_STORE = default(CliSettings, "store")

StoreOpt = Annotated[Path, setting(CliSettings, "store", "--store")]
UrlOpt = Annotated[str | None, setting(CliSettings, "url", "--url")]
ReadOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--read-only",
        help="Open the store for inspection: writes are refused, and a log whose hash chain "
        "breaks is warned about instead of refused (what precedes the break is served).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
#: None: the store's setting (``MEMSTREAM_MAX_EVENT_BYTES``, or its default).
MaxEventOpt = Annotated[int | None, setting(StoreSettings, "max_event_bytes", "--max-event-bytes")]
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


def print_json(obj: Any) -> None:
    """``obj`` as JSON on stdout, encoded as the HTTP API encodes its answers (msgspec):
    pass the body the API answers for the same call (see :mod:`memstream.wire`)."""
    sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
    sys.stdout.flush()


def show(renderable: Any) -> None:
    """Print ``renderable`` (a table, usually) on stdout, whole: piped, at its natural width
    (see ``out``); on a terminal too narrow for a table, one block per row (column: value)
    instead of squeezed or dropped columns."""
    if isinstance(renderable, Table) and out.is_terminal:
        wide = out.options.update(max_width=1_000_000)
        if out.measure(renderable, options=wide).minimum > out.width:
            renderable = as_records(renderable)
    out.print(renderable)


def as_records(table: Table) -> Group:
    """A table as one block per row: ``column: value`` lines, a blank line between rows."""
    parts: list[Any] = [Text(str(table.title), style="bold")] if table.title else []
    columns = [(str(c.header) if table.show_header else "", list(c.cells)) for c in table.columns]
    for row in range(table.row_count):
        if parts:
            parts.append(Text(""))
        cells = [(h, cells[row]) for h, cells in columns]
        if not table.show_header and len(cells) == 2:  # a field/value table
            cells = [(str(cells[0][1]), cells[1][1])]
        for header, cell in cells:
            value = cell if isinstance(cell, Text) else Text(str(cell))
            parts.append(Text(f"{header}: ", style="bold") + value if header else value)
    return Group(*parts)


def classify(e: BaseException) -> CliError | None:
    """The exit code and JSON body of an exception a user can meet; None for bugs."""
    from memstream.client import ServerError, ServerUnavailable
    from memstream.server import ServeError

    if isinstance(e, CliError):
        return e
    if isinstance(e, MalformedEvent):
        return CliError(str(e), EXIT_BAD_INPUT, e.to_dict())
    if isinstance(e, UnknownMemory) and e.offset is None:  # refused before it was appended
        return CliError(str(e), EXIT_REJECTED, not_found_body(str(e.memory_id)))
    if isinstance(e, UnknownSubscription):  # the bodies HTTP answers (404, 410, 403/429)
        return CliError(str(e), EXIT_REJECTED, {"error": "not_found", "name": e.name})
    if isinstance(e, SubscriptionClosed):
        return CliError(str(e), EXIT_REJECTED, {"error": "closed"})
    if isinstance(e, TermsViolated):
        body = {"error": "terms", "publication": e.publication, "term": e.term}
        if e.retry_after is not None:
            body["retry_after"] = e.retry_after
        return CliError(str(e), EXIT_REJECTED, body)
    if isinstance(e, Rejected):  # the body HTTP answers (409)
        return CliError(str(e), EXIT_REJECTED, rejected_body(e))
    if isinstance(e, LogTampered):  # failed verification, like `audit verify`'s break
        return CliError(str(e), EXIT_REJECTED, e.to_dict())
    if isinstance(e, RecordCorrupt):
        return CliError(str(e), EXIT_REJECTED, {"error": "record_corrupt"})
    if isinstance(e, SearchDisabled):  # the body HTTP answers (503)
        return CliError(str(e), EXIT_UNAVAILABLE, {"error": "search_disabled"})
    if isinstance(e, Unsupported):  # the body HTTP answers (501)
        return CliError(str(e), EXIT_UNAVAILABLE, {"error": "unsupported"})
    if isinstance(e, NotCaughtUp):
        body = {
            "error": "not_caught_up", "wanted": e.wanted, "reached": e.reached,
            "lagging": e.lagging, "started": e.started,
        }  # fmt: skip
        return CliError(str(e), EXIT_UNAVAILABLE, body)
    unavailable = (
        StoreLocked, ProjectorFailed, ProcessorFailed, ServerUnavailable, ServerError, ServeError,
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
def reported(json_out: bool) -> Iterator[None]:
    """Turn the errors a user can meet into a message on stderr (plus JSON) and an exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        err.print("interrupted", style="yellow")
        raise typer.Exit(130) from None
    except Exception as e:
        failure = classify(e)
        if failure is None:
            raise
        err.print(Text("error: ", style="bold red") + Text(str(failure)), soft_wrap=True)
        if json_out:
            print_json(failure.body)
        raise typer.Exit(failure.code) from None


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFactory]:
    """A rich progress display on stderr, as the ``progress`` factory the store takes."""
    bar = Progress(
        SpinnerColumn(),
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
            # no total (a model loading): a spinner and the time it has taken
            task = bar.add_task(label, total=total if total > 0 else None)
            return lambda n: bar.advance(task, n)

        yield factory


def point_option(value: str | None, option: str) -> datetime | int | None:
    from memstream.client import parse_point

    if value is None:
        return None
    try:
        return parse_point(value, option)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None
