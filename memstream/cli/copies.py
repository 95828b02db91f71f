"""Copies of a store: ``replay`` (every projection rebuilt from the log, up to a point)
and ``backup`` (the log and keys, consistent while a server writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DEFAULT_STORE,
    JsonOpt,
    ReadOnlyOpt,
    StoreOpt,
    UrlOpt,
    out,
    point_option,
    print_json,
    progress_bar,
    reported,
)
from .connect import log_records, open_store


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
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild every projection from the log, up to a point, into a new read-only store."""
    with reported(json_out):
        point = point_option(to, "--to")
        target_dir = into.expanduser().absolute()
        with open_store(store, url, read_only=read_only) as source, progress_bar() as progress:
            replayed = source.replay(target_dir, to=point, progress=progress)
            with replayed:
                head = replayed.head
        result = {"into": str(target_dir), "to": to, "head": head, "records": head + 1}
        if json_out:
            print_json(result)
        else:
            out.print(
                f"replayed {head + 1} records (offsets 0..{head}) into {target_dir}; query it "
                f"with e.g. `memstream audit --store {target_dir}`"
            )


def backup(
    dest: Annotated[Path, typer.Argument(help="New (or empty) directory for the copy.")],
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """A consistent copy of the log and keys (safe while a server writes); open it to restore."""
    with reported(json_out):
        target_dir = dest.expanduser().absolute()
        with open_store(store, url, read_only=read_only) as target:
            written = target.backup(target_dir)
        records = log_records(written)
        result = {"dest": str(written), "records": records, "head": records - 1}
        if json_out:
            print_json(result)
        else:
            out.print(
                f"backed up {records} records to {written}; restore by opening it: "
                f"`memstream serve --store {written}`"
            )
