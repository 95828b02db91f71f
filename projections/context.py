"""What the search indexes see of a memory: its text, preceded by its ``context``, if any.

A memory taken from a conversation is often unintelligible alone ("Guilty. Biscuit's a
two-year-old beagle."): who said it, when, and what it answered are elsewhere. A writer
can put that in the memory's metadata under :data:`CONTEXT_KEY` (a string, or a list of
strings), e.g. ``"Maya, Tuesday 9 May 2023, answering Tobias: How is the new family
member settling in?"``. The vector and keyword indexes then index
``context + "\\n" + text`` for that memory, while the memory's text, what reads and
search hits return, stays the turn itself. The same rule applies to every memory, in
every path that embeds or keyword-indexes one (the live indexes, the brute-force and
as-of scoring, purges, ``memstream reembed``); a memory without a context is indexed
exactly as before.

The context belongs to the memory (it is in its own event, sealed under its subject's
key and erased with it): the store never copies another memory's text into an index
entry, so erasing one memory cannot leave its words in a neighbour's index entry unless
a writer put them in that neighbour's own metadata.

Embeddings are cached by content hash; an indexed text with a context gets its own key,
derived from the memory's (keyed) content hash and the context, so equal texts with
equal contexts of one subject share a vector and nobody can confirm a context from the
cache without the subject's key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CONTEXT_KEY", "INDEXING", "context_of", "indexed", "stored_metadata"]

#: The metadata key whose value is indexed with the text.
CONTEXT_KEY = "context"
#: Names this rule in the search indexes' identity: a change rebuilds them.
INDEXING = "text+metadata.context/1"
#: Longest context kept (characters); the model truncates long inputs anyway.
MAX_CONTEXT = 2_000


def context_of(metadata: Mapping[str, Any] | None) -> str | None:
    """The memory's context string, or ``None``."""
    if not metadata:
        return None
    value = metadata.get(CONTEXT_KEY)
    if isinstance(value, list | tuple):
        value = "\n".join(v for v in value if isinstance(v, str) and v.strip())
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:MAX_CONTEXT] or None


def indexed(
    text: str, content_hash: str | None, metadata: Mapping[str, Any] | None
) -> tuple[str, str | None]:
    """``(indexed text, its embedding-cache key)`` of a memory's content."""
    context = context_of(metadata)
    if context is None:
        return text, content_hash
    full = f"{context}\n{text}"
    if content_hash is None:
        return full, None
    try:
        key = bytes.fromhex(content_hash)[:64]
    except ValueError:
        key = content_hash.encode()[:64]
    digest = hashlib.blake2b(context.encode(), key=key or b"-", digest_size=16).hexdigest()
    return full, digest


def stored_metadata(raw: Any) -> dict[str, Any] | None:
    """A ``versions.metadata`` column value (JSON text, or already decoded), decoded only
    when it may hold a context (most memories have none)."""
    if raw is None or isinstance(raw, dict):
        return raw
    if CONTEXT_KEY not in raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None
