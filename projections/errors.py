"""Errors shared by the on-disk projection stores (vector and keyword indexes)."""

from __future__ import annotations

from pathlib import Path


class IndexUnusable(Exception):
    """A persisted index cannot be trusted and must be rebuilt from the event log.

    Raised instead of handing a damaged file to a native library: hnswlib can crash the
    process on a truncated graph and silently return garbage for a graph of another
    dimension, so every store checks its manifest (offset, dimension, model, checksums)
    first and reports what is wrong here. Callers catch this one type, discard the
    directory and replay the log from the beginning.

    Attributes:
        reason: what is wrong, naming the offending file or value.
        path: the index directory or file concerned.
    """

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        where = f" ({self.path})" if self.path is not None else ""
        super().__init__(f"index unusable{where}: {reason}; rebuild it from the event log")
