"""Reading commands: ``get``, ``history`` and ``search``."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (
    DEFAULT_STORE,
    EXIT_REJECTED,
    AsOfOpt,
    CliError,
    JsonOpt,
    MinOffsetOpt,
    ReadOnlyOpt,
    StoreOpt,
    UrlOpt,
    out,
    point_option,
    print_json,
    progress_bar,
    reported,
)
from .connect import open_store
from .render import history_table, hits_table, memory_table


def get(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    version: Annotated[int | None, typer.Option(min=1, help="A version of the content.")] = None,
    as_of: AsOfOpt = None,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Show a memory now, at a version, or as of a time or an offset."""
    with reported(json_out):
        point = point_option(as_of, "--as-of")
        with open_store(store, url, read_only=read_only) as target:
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
            print_json(m)
        else:
            out.print(memory_table(m))


def history(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    parents: Annotated[
        bool, typer.Option("--parents/--no-parents", help="Include merge parents' chains.")
    ] = True,
    as_of: AsOfOpt = None,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Show a memory's version chain, with the chains of the memories merged into it."""
    with reported(json_out):
        point = point_option(as_of, "--as-of")
        with open_store(store, url, read_only=read_only) as target:
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
            print_json(versions)
        else:
            out.print(history_table(versions, f"version chain of {memory_id}"))


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
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Search memories by meaning and by words (fused), with filters."""
    with reported(json_out):
        point = point_option(as_of, "--as-of")
        with (
            progress_bar(enabled=not json_out) as progress,
            open_store(store, url, semantic=True, read_only=read_only, progress=progress) as target,
        ):
            if min_offset is None:
                target.flush()  # the indexes catch up first (embedding what they lack)
            hits = target.search(
                query, namespaces=namespace or None, k=k, tags_any=tag or None,
                tags_all=all_tags or None, states=state or None,
                include_archived=include_archived, exact=exact, alpha=alpha, as_of=point,
                min_offset=min_offset,
            )  # fmt: skip
        if json_out:
            print_json(hits)
        else:
            out.print(hits_table(hits, f"search: {query}"))
