"""``memstream access-log`` (who read what, filtered and paged) and ``access-log export``
(as JSON Lines or CSV, to a file or stdout)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from memstream.governance.access_log import AccessPage, AccessRecord

from .common import (
    DEFAULT_STORE,
    JsonOpt,
    ReadOnlyOpt,
    StoreOpt,
    UrlOpt,
    err,
    out,
    point_option,
    print_json,
    reported,
    show,
)
from .connect import open_store
from .render import _when

access_app = typer.Typer(
    help="The access log: every read (get, history, list, search, audit, follow), when, by "
    "whom, in which call context, of which memories. `memstream access-log export` writes it "
    "as JSON Lines or CSV.",
    invoke_without_command=True,
    no_args_is_help=False,
)

PrincipalOpt = Annotated[str | None, typer.Option(help="Only reads by this principal.")]
NamespaceOpt = Annotated[
    str | None, typer.Option(help="Only reads that asked for, or returned, this namespace.")
]
MemoryOpt = Annotated[str | None, typer.Option("--memory", help="Only reads of this memory id.")]
ActionOpt = Annotated[
    str | None,
    typer.Option(help="Only this action: get, history, list, search, audit, follow, ..."),
]
SinceOpt = Annotated[str | None, typer.Option(help="RFC 3339 time (at >=).")]
UntilOpt = Annotated[str | None, typer.Option(help="RFC 3339 time (at <=).")]


def _time(value: str | None, option: str) -> datetime | None:
    when = point_option(value, option)
    if isinstance(when, int):
        raise typer.BadParameter("expected an RFC 3339 time with timezone", param_hint=option)
    return when


def access_table(records: Sequence[AccessRecord], title: str) -> Table:
    """Access records: when, who (and the app), what, of which memories, how."""
    t = Table(title=title, title_justify="left")
    for col in ("id", "at", "principal", "app", "action", "namespaces", "objects", "detail"):
        t.add_column(col, no_wrap=col in ("id", "at", "action"))
    for r in records:
        detail = msgspec.json.encode(r.detail).decode() if r.detail else ""
        t.add_row(
            str(r.id), _when(r.at), Text(r.principal), Text(str(r.context.get("app") or "")),
            r.action, Text(", ".join(r.namespaces)), Text(", ".join(r.objects)), Text(detail),
        )  # fmt: skip
    return t


def access_log(
    ctx: typer.Context,
    principal: PrincipalOpt = None,
    namespace: NamespaceOpt = None,
    memory: MemoryOpt = None,
    action: ActionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    after: Annotated[int | None, typer.Option(min=0, help="Cursor: a page's next_after.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Records per page.")] = 100,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """List access records, oldest first (filters combine). Needs auditor access."""
    if ctx.invoked_subcommand is not None:
        return
    with reported(json_out):
        since_t, until_t = _time(since, "--since"), _time(until, "--until")
        records: list[AccessRecord] = []
        cursor = after
        with open_store(store, url, read_only=read_only) as target:
            while True:
                page = target.access_log(
                    principal=principal, namespace=namespace, memory_id=memory, action=action,
                    since=since_t, until=until_t, after=cursor, limit=limit,
                )  # fmt: skip
                records.extend(page.records)
                cursor = page.next_after
                if not all_pages or cursor is None:
                    break
        if json_out:
            print_json(AccessPage(records=records, next_after=cursor))
        else:
            show(access_table(records, "access log"))
            if cursor is not None:
                out.print(f"more records: pass --after {cursor} (or --all)")


def export(
    format: Annotated[
        str, typer.Option("--format", help="jsonl (JSON Lines) or csv.", case_sensitive=False)
    ] = "jsonl",
    out_file: Annotated[
        str | None,
        typer.Option("--out", help="File to write (whole or not at all); stdout without it or -."),
    ] = None,
    principal: PrincipalOpt = None,
    namespace: NamespaceOpt = None,
    memory: MemoryOpt = None,
    action: ActionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
) -> None:
    """Export access records, oldest first, as JSON Lines or CSV (filters combine)."""
    with reported(False):
        fmt = format.lower()
        if fmt not in ("jsonl", "csv"):
            raise typer.BadParameter("must be jsonl or csv", param_hint="--format")
        since_t, until_t = _time(since, "--since"), _time(until, "--until")
        to_stdout = out_file in (None, "-")
        target_file = sys.stdout if to_stdout else Path(out_file)  # type: ignore[arg-type]
        with open_store(store, url, read_only=read_only) as target:
            n = target.export_access_log(
                target_file, format=fmt, principal=principal, namespace=namespace,
                memory_id=memory, action=action, since=since_t, until=until_t,
            )  # fmt: skip
        where = "stdout" if to_stdout else str(target_file)
        err.print(f"exported {n} access record{'s' if n != 1 else ''} to {where} ({fmt})")
