"""``memstream retention run``: one pass of the retention scheduler, now or as of a time."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from .common import (
    DEFAULT_STORE,
    JsonOpt,
    StoreOpt,
    UrlOpt,
    out,
    print_json,
    reported,
    show,
)
from .connect import open_store

retention_app = typer.Typer(
    help="TTLs and retention policies: the scheduler that expires and erases memories "
    "when their rules fall due (docs/governance.md).",
    no_args_is_help=True,
)


def run(
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Run as if it were this time (RFC 3339 with timezone, e.g. "
            "2027-01-01T00:00:00Z); default: now.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what is due; append nothing.")
    ] = False,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Expire and erase the memories whose TTL, expiry time or retention rule is due.

    Each gets an `expire` or `erase` event with `memstream:scheduler` as its actor and the
    rule as its reason. Goes through the server when one holds the store (a server also
    runs a pass every MEMSTREAM_RETENTION_INTERVAL seconds by itself).
    """
    from memstream import validation
    from memstream.governance.retention import RetentionScheduler

    with reported(json_out):
        try:
            when = validation.time(now, "--now")
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--now") from None
        scheduler = RetentionScheduler(interval=0)  # this pass only, nothing in the background
        with open_store(store, url, retention=scheduler) as target:
            report = target.run_retention(when, dry_run=dry_run)
        if json_out:
            print_json(report)
            return
        verb = "due (dry run: nothing appended)" if dry_run else "due"
        if not report.due:
            out.print(f"nothing {verb} as of {report.now.isoformat()}")
            return
        t = Table(title=f"{len(report.due)} {verb} as of {report.now.isoformat()}")
        for col in ("memory", "namespace", "operation", "rule", "due at", "outcome"):
            t.add_column(col, no_wrap=col != "rule")
        for d in report.due:
            outcome = d.status or "-"
            if d.code:
                outcome += f" ({d.code})"
            t.add_row(
                Text(d.memory_id), Text(d.namespace), d.operation, Text(d.rule),
                d.due_at.isoformat(), outcome,
            )  # fmt: skip
        show(t)
        if not dry_run:
            out.print(
                f"{report.accepted} accepted, {report.rejected} rejected, "
                f"{report.duplicates} already appended by another scheduler"
            )
