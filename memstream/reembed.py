"""The re-embed job: switch a store to another embedding model, explicitly and resumably.

Vectors are derived data, cached per ``(model_id, content_hash)`` in the store's
``embeddings.sqlite``, and the semantic projection records the model id it was built for
(``follower.json`` and the vector index manifest): opened with another model, it rebuilds
its indexes from DuckDB's current state, taking every vector from the cache. A model change
therefore needs exactly two things, done in this order by :func:`reembed`:

1. every live memory's current text is embedded with the new model into the cache, in
   batches written as they complete, shortest texts first (less padding); texts already
   cached for that model are skipped, so an interrupted job resumes where it stopped and a
   second run computes nothing;
2. the store's configured model (``model.json`` beside the cache, read by every later open
   of the store, the server's included) is switched to the new one, and the store is
   opened so that the semantic projection rebuilds its indexes for it, from the cache.

Until step 2 the store keeps searching with its old model: an interrupted job leaves it
consistent. Vectors of the old model stay in the cache (switching back costs no
embedding); erasing a memory drops the vectors of every model.

Memories whose producer supplied a vector keep it (it is the producer's, not the
model's); one whose dimension does not fit the new model is reported, and after the switch
it is searchable by keywords only until it is revised.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memstream.projections.context import indexed, stored_metadata
from memstream.projections.embedding import CachedEmbedder, EmbeddingCache, default_model_path
from memstream.projections.models import (
    EMBEDDINGS_FILE,
    LazyEmbedder,
    read_model_config,
    write_model_config,
)
from memstream.projections.semantic import FOLLOWER_FILE, LIVE_STATES
from memstream.sdk import MemoryStore
from memstream.streams.embedded import MANIFEST, ProgressFactory, StoreLocked

__all__ = ["ReembedResult", "StoreBusy", "reembed", "resolve_model"]

#: Texts handed to the cached embedder per call (it writes each model batch as it goes).
CHUNK = 1_024


class StoreBusy(RuntimeError):
    """Another process (normally a running server) holds the store."""


@dataclass
class ReembedResult:
    """What a re-embed did: counts, the models, and how the index rebuild went."""

    store: str
    model_id: str
    dim: int
    previous_model_id: str | None
    memories: int
    texts: int
    already_cached: int
    embedded: int
    model_calls: int
    supplied_vectors: int
    supplied_wrong_dim: int
    seconds: float
    rebuild: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_model(model: str | os.PathLike[str] | None, batch_size: int = 64) -> LazyEmbedder:
    """The embedder for ``model`` (a local transformers folder; None: the default model).

    Raises :class:`FileNotFoundError` naming the path when it is not a model folder. The
    default model's own folder, passed by path, is the default model (same id).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if model is None:
        return LazyEmbedder(None, batch_size=batch_size)
    path = Path(model).expanduser().absolute()
    if not path.is_dir():
        raise FileNotFoundError(
            f"model folder {str(path)!r} does not exist; pass --model a local transformers "
            "folder (config.json, tokenizer files and model.safetensors or pytorch_model.bin)"
        )
    missing = [n for n in ("config.json",) if not (path / n).is_file()]
    if not any((path / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors or pytorch_model.bin")
    if missing:
        raise FileNotFoundError(
            f"model folder {str(path)!r} lacks {' and '.join(missing)}; it must be a saved "
            "transformers model (save_pretrained) with its tokenizer"
        )
    try:
        default = default_model_path().resolve()
    except FileNotFoundError:
        default = None
    if path.resolve() == default:
        return LazyEmbedder(None, batch_size=batch_size)
    return LazyEmbedder(path, batch_size=batch_size)


def _previous_model(root: Path) -> str | None:
    config = read_model_config(root)
    if config is not None:
        return config.get("model_id")
    follower = root / "state" / "semantic" / FOLLOWER_FILE
    try:
        return json.loads(follower.read_text(encoding="utf-8")).get("model_id")
    except (OSError, ValueError):
        return None


def _open(root: Path, actor: str, **kw: Any) -> Any:
    try:
        return MemoryStore.open(root, actor=actor, retention=False, **kw)
    except StoreLocked as exc:
        raise StoreBusy(
            f"{exc}. A re-embed needs the store to itself: stop the server, run "
            "`memstream reembed` again, then start the server (it opens with the new model)"
        ) from None


def reembed(
    store: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 64,
    progress: ProgressFactory | None = None,
    actor: str = "reembed",
) -> ReembedResult:
    """Embed every live memory with ``model``, then make it the store's model (see above).

    ``store`` is a store directory that no other process holds (:class:`StoreBusy`
    otherwise); ``model`` a local transformers folder (None: the default model).
    ``progress`` is a ``(label, total) -> tick(n)`` factory for the embedding and the
    index rebuild.
    """
    started = time.monotonic()
    root = Path(store).expanduser().absolute()
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(f"no memstream store at {root}; pass the store's directory")
    new = resolve_model(model, batch_size)
    model_id, dim = new.model_id, new.dim  # fingerprints the files: fails before any work
    previous = _previous_model(root)

    target = _open(root, actor, semantic=False)
    try:
        with target.runtime.duck.reading() as cur:
            rows = cur.execute(
                "SELECT m.memory_id, v.content_hash, v.text, len(v.vector), v.metadata "
                "FROM memories m JOIN versions v "
                "ON v.memory_id = m.memory_id AND v.version = m.version "
                "WHERE list_contains(?, m.state) AND v.text IS NOT NULL "
                "AND v.content_hash IS NOT NULL ORDER BY m.memory_id",
                [list(LIVE_STATES)],
            ).fetchall()
        # What the indexes embed: the text with its context, under its own cache key.
        rows = [
            (memory_id, *indexed(text, content_hash, stored_metadata(meta))[::-1], vlen)
            for memory_id, content_hash, text, vlen, meta in rows
        ]
        supplied = [r for r in rows if r[3] is not None]
        wrong_dim = sum(1 for r in supplied if r[3] != dim)
        texts: dict[str, str] = {}
        for _, content_hash, text, vector_len in rows:
            if vector_len is None:
                texts.setdefault(content_hash, text)
        cache = EmbeddingCache(root / EMBEDDINGS_FILE)
        try:
            have = cache.cached_hashes(model_id, texts)
            todo = sorted((h for h in texts if h not in have), key=lambda h: len(texts[h]))
            embedder = CachedEmbedder(new, cache, batch_size=batch_size)
            tick = progress("re-embedding memories", len(todo)) if progress and todo else None
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                embedder.embed([(h, texts[h]) for h in chunk])
                if tick:
                    tick(len(chunk))
            cache.link([(memory_id, h) for memory_id, h, _, vlen in rows if vlen is None])
            if cache.cached_hashes(model_id, texts) != set(texts):
                raise RuntimeError(
                    f"re-embed of {root}: the cache lacks vectors it was just given; "
                    "nothing was switched, run it again"
                )
        finally:
            cache.close()
        write_model_config(
            root,
            new,
            previous_model_id=previous,
            configured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    finally:
        target.close()

    result = ReembedResult(
        store=str(root),
        model_id=model_id,
        dim=dim,
        previous_model_id=previous,
        memories=len(rows),
        texts=len(texts),
        already_cached=len(texts) - len(todo),
        embedded=embedder.texts_embedded,
        model_calls=embedder.model_calls,
        supplied_vectors=len(supplied),
        supplied_wrong_dim=wrong_dim,
        seconds=0.0,
    )
    # Open with the configured model: the projection finds its indexes built for another
    # model and rebuilds them from the cache (no embedding: every vector is there).
    reopened = _open(root, actor, semantic=True, progress=progress)
    try:
        reopened.flush()
        proj = reopened.semantic
        assert proj is not None and proj.vectors is not None
        result.rebuild = {
            "model_id": proj.embedder.model_id,
            "reason": proj.rebuild_reason,
            "indexed": len(proj.vectors),
            "model_calls": proj.embedder.model_calls,
            "problems": len(proj.problems),
        }
    finally:
        reopened.close()
    result.seconds = time.monotonic() - started
    return result
