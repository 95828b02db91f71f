"""Facets: the values a filtered search selects memories by, held by the search indexes.

A memory's facets are its namespace and its tags, each encoded as one string with a prefix
naming the kind of value, so that a namespace and a tag spelled alike stay apart. The
vector index keeps the live labels holding each facet
(:meth:`~memstream.projections.vectors.VectorIndex.search_facets`), so a search filtered
by namespaces and tags finds its candidates by set operations on integers.

A filter is a list of clauses, each a list of facets, a memory matching when it holds at
least one facet of every clause: ``namespaces=[a, b]`` is one clause ``[ns a, ns b]``,
``tags_any=[x, y]`` one clause ``[tag x, tag y]``, and each tag of ``tags_all`` a clause of
its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["clauses", "facets_of", "namespace_facet", "tag_facet"]


def namespace_facet(namespace: str) -> str:
    return "n:" + namespace


def tag_facet(tag: str) -> str:
    return "t:" + tag


def facets_of(namespace: str, tags: Iterable[str]) -> tuple[str, ...]:
    """The facets of a memory in ``namespace`` with ``tags``."""
    return (namespace_facet(namespace), *dict.fromkeys(map(tag_facet, tags)))


def clauses(
    namespaces: Sequence[str] | None, tags_any: Sequence[str], tags_all: Sequence[str]
) -> list[list[str]]:
    """The clauses of a filter on namespaces (``None``: any) and tags."""
    out: list[list[str]] = []
    if namespaces is not None:
        out.append([namespace_facet(n) for n in namespaces])
    if tags_any:
        out.append([tag_facet(t) for t in tags_any])
    out.extend([tag_facet(t)] for t in dict.fromkeys(tags_all))
    return out
