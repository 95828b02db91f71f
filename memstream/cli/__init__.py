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

The package: ``common`` (the app, shared options, exit codes, error reporting),
``connect`` (which store a command works on), ``render`` (tables), and the commands by
theme: ``writes``, ``reads``, ``audit``, ``access`` (the access log), ``copies`` (replay,
backup), ``ops`` (serve, demo, reembed, bench), ``governance``, ``pubsub`` (subscriptions,
``subscribe``, publications) and ``kafka`` (the Kafka runtime's commands). They are
registered here, in the order ``memstream --help`` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import (  # noqa: F401 (governance registers itself)
    access,
    audit,
    copies,
    governance,
    kafka,
    ops,
    pubsub,
    reads,
    retention,
    writes,
)
from .common import app, audit_app, out
from .render import audit_table, history_table, memory_table, outcomes_table

__all__ = [
    "app",
    "audit_table",
    "history_table",
    "main",
    "memory_table",
    "outcomes_table",
]


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


for _command in (
    ops.serve,
    writes.add,
    reads.list_memories,
    writes.revise,
    writes.archive,
    writes.restore,
    writes.erase,
    writes.publish,
    reads.get,
    reads.history,
    reads.search,
    pubsub.subscribe,
    copies.replay,
    copies.backup,
    ops.checkpoint,
    ops.reembed,
    ops.demo,
    ops.bench,
    kafka.worker,
    kafka.topics,
    kafka.status,
    kafka.admin_token,
    kafka.broker,
):
    app.command("list" if _command is reads.list_memories else None)(_command)
audit_app.callback()(audit.audit)
audit_app.command("verify")(audit.audit_verify)
audit_app.command("export")(audit.audit_export)
retention.retention_app.command("run")(retention.run)
app.add_typer(retention.retention_app, name="retention")
app.add_typer(access.access_app, name="access-log")
access.access_app.callback()(access.access_log)
access.access_app.command("export")(access.export)


def main() -> None:
    """Entry point of the ``memstream`` script and of ``python -m memstream``."""
    app(prog_name="memstream")
