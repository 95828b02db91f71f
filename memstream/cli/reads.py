"""Reading commands: ``get``, ``history``, ``list`` and ``search``. With ``--json`` each
prints exactly the body the HTTP API answers for the same call (:mod:`memstream.wire`)."""

from __future__ import annotations

from typing import Annotated

import typer

from memstream.wire import hits_body, not_found_body

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
    point_option,
    print_json,
    progress_bar,
    reported,
    show,
)
from .connect import open_store
from .render import history_table, hits_table, memories_table, memory_table


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
            body = not_found_body(memory_id, version, as_of)
            raise CliError(body["message"], EXIT_REJECTED, body)
        if json_out:
            print_json(m)
        else:
            show(memory_table(m))


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
            body = not_found_body(memory_id, as_of=as_of)
            raise CliError(body["message"], EXIT_REJECTED, body)
        if json_out:
            print_json(versions)
        else:
            show(history_table(versions, f"version chain of {memory_id}"))


def list_memories(
    namespace: Annotated[
        str | None,
        typer.Argument(help="The namespace (user/alice); every namespace's without it."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only these states (repeat); default active, activated."),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Has every one of these tags (repeat).")
    ] = None,
    after: Annotated[
        int | None, typer.Option(min=-1, help="Cursor: the `next_after` of the page before.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Memories per page.")] = 100,
    min_offset: MinOffsetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    read_only: ReadOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """List memories in creation order, a page at a time, with filters."""
    with reported(json_out):
        with open_store(store, url, read_only=read_only) as target:
            page = target.list_memories(
                namespace, states=state or None, tags=tag or None, after=after, limit=limit,
                min_offset=min_offset,
            )  # fmt: skip
        if json_out:
            print_json(page)
        else:
            show(memories_table(page.memories, f"memories of {namespace or 'every namespace'}"))
            if page.next_after is not None:
                show(f"more memories: pass --after {page.next_after}")


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
        typer.Option(
            min=0.0,
            max=1.0,
            help="Rank-fusion semantic weight: 1 semantic only, 0 keywords only (default: "
            "semantic plus a small bonus for the memory's own words).",
        ),
    ] = None,
    query_hints: Annotated[
        bool,
        typer.Option(
            "--hints/--no-hints",
            help='Rank memories dated in a period the query names ("in May 2023"), or '
            "said by a speaker it names, first.",
        ),
    ] = True,
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
                query_hints=query_hints, min_offset=min_offset,
            )  # fmt: skip
        if json_out:
            print_json(hits_body(hits))
        else:
            show(hits_table(hits, f"search: {query}"))
