"""The layout of an embedded store's directory: its files, its manifest, its lock.

```
<store>/store.json      the manifest: format, creation time, read-only (a replay), origin
<store>/log.sqlite      the durable, hash-chained log (the source of truth)
<store>/keys.sqlite     the key store (outside the log: erasure destroys keys here)
<store>/state/          projections, rebuilt from the log when missing or stale
<store>/access/         the access log: who read what (not derived from the log; bounded)
<store>/.lock           held by the one process that has the store open
<store>/server.json     the address of the server holding it, if one does
```
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

STORE_FORMAT = 1
LOG_FILE = "log.sqlite"
KEYS_FILE = "keys.sqlite"
STATE_DIR = "state"
CORE_FILE = "core.duckdb"
MANIFEST = "store.json"
LOCK_FILE = ".lock"
SERVER_FILE = "server.json"
ACCESS_DIR = "access"


class StoreLocked(RuntimeError):
    """Another process holds the store (DuckDB allows one writer)."""


class StoreReadOnly(RuntimeError):
    """The store is a replay, or was opened read-only for inspection: it takes no appends."""


class LogTampered(RuntimeError):
    """A store's log breaks its hash chain (tampering or damage): ``offset`` is the first
    bad record, ``reason`` what is wrong with it. The store was not opened, or, for a
    replay, nothing was replayed."""

    def __init__(
        self, root: Path, offset: int, reason: str, consequence: str = "the store was not opened"
    ):
        self.root, self.offset, self.reason = root, offset, reason
        super().__init__(
            f"store {root}: the log's hash chain breaks at offset {offset}: {reason}; "
            f"{consequence}. Inspect it with `memstream audit verify --store {root}`; read "
            f"what precedes the break by opening it read-only (`--read-only`, or "
            f"`MemoryStore.open(path, read_only=True)`), and restore the log from a backup "
            "to write again"
        )

    def to_dict(self) -> dict[str, object]:
        return {"error": "log_tampered", "offset": self.offset, "reason": self.reason}


def read_manifest(root: Path) -> dict:
    p = root / MANIFEST
    return json.loads(p.read_text()) if p.exists() else {}


def write_manifest(root: Path, data: dict) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, root / MANIFEST)


def empty_dir(dest: str | Path) -> Path:
    """``dest``, created if need be; refused unless it is empty (a copy never mixes)."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty; choose a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def locked_message(root: Path) -> str:
    info = root / SERVER_FILE
    if info.exists():
        try:
            s = json.loads(info.read_text())
            return (
                f"store {root} is held by a memstream server (pid {s.get('pid')}) at "
                f"{s.get('url')}; send requests there (the CLI does so by itself) or stop it"
            )
        except (OSError, ValueError):
            pass
    return f"store {root} is open in another process; close it first (DuckDB allows one writer)"


def remove_store(root: str | Path) -> None:
    """Delete a store directory (used by replay's scratch stores and tests)."""
    shutil.rmtree(root)
