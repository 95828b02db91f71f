"""``memstream audit`` (the audit trail, filtered and paged) and ``audit verify`` (the
log's hash chain)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from memstream.schemas.views import AuditEntry
from memstream.sdk import MemoryStore

from .common import (
    DEFAULT_STORE,
    EXIT_OK,
    EXIT_REJECTED,
    AsOfOpt,
    JsonOpt,
    MinOffsetOpt,
    ReadOnlyOpt,
    StoreOpt,
    UrlOpt,
    err,
    out,
    point_option,
    print_json,
    progress_bar,
    reported,
    show,
)
from .connect import open_store
from .render import audit_table


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
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """List audit entries in log order (filters combine)."""
    if ctx.invoked_subcommand is not None:
        return
    with reported(json_out):
        if status is not None and status not in ("accepted", "rejected"):
            raise typer.BadParameter("must be accepted or rejected", param_hint="--status")
        since_t, until_t = point_option(since, "--since"), point_option(until, "--until")
        for name, value in (("--since", since_t), ("--until", until_t)):
            if isinstance(value, int):
                raise typer.BadParameter(
                    "expected a time; use --after for offsets", param_hint=name
                )
        point = point_option(as_of, "--as-of")
        entries: list[AuditEntry] = []
        cursor = after
        with open_store(store, url, read_only=read_only) as target:
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
            print_json({"entries": entries, "next_after": cursor})
        else:
            show(audit_table(entries, "audit"))
            if cursor is not None:
                out.print(f"more entries: pass --after {cursor} (or --all)")


def audit_verify(
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute the log's hash chain from its stored bytes; exit 1 at the first break.

    The store is opened read-only (a broken log is what this command is for)."""
    with reported(json_out):
        with open_store(store, url, read_only=True) as target:
            head = target.head
            if isinstance(target, MemoryStore):
                with progress_bar(enabled=not json_out and head > 10_000) as progress:
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
            print_json(result)
        elif brk is None:
            out.print(f"[green]OK[/green]: the hash chain of {head + 1} records is intact")
        else:
            err.print(Text(f"BROKEN at offset {brk.offset}: {brk.reason}", style="bold red"))
    raise typer.Exit(EXIT_OK if brk is None else EXIT_REJECTED)


def audit_export(
    format_: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    permissions: Annotated[
        bool,
        typer.Option(
            "--permissions",
            help="The permission report (who granted what to "
            "whom, when, why) instead of the events.",
        ),  # fmt: skip
    ] = False,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only this actor (with --permissions: by or for it).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time (recorded_at >=).")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time (recorded_at <=).")] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="The file to write (default: stdout).")
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
) -> None:
    """Export the audit trail, or the permission report, as JSON Lines or CSV."""
    with reported(False):
        if format_ not in ("jsonl", "csv"):
            raise typer.BadParameter("must be jsonl or csv", param_hint="--format")
        since_t, until_t = point_option(since, "--since"), point_option(until, "--until")
        out = out_path if out_path is not None else sys.stdout
        with open_store(store, url, read_only=read_only) as target:
            n = target.export_audit(
                out, format=format_, permissions=permissions, namespace=namespace,
                actor=actor, since=since_t, until=until_t,
            )  # fmt: skip
        if out_path is not None:
            what = "permission changes" if permissions else "audit entries"
            err.print(f"{n} {what} written to {out_path}")
