"""The layout of an embedded store's directory: its files, its manifest, its lock.

```
<store>/store.json      the manifest: format, creation time, read-only (a replay), origin
<store>/log.sqlite      the durable, hash-chained log (the source of truth)
<store>/keys.sqlite     the key store (outside the log: erasure destroys keys here)
<store>/state/          projections, rebuilt from the log when missing or stale
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


class StoreLocked(RuntimeError):
    """Another process holds the store (DuckDB allows one writer)."""


class StoreReadOnly(RuntimeError):
    """The store is a replay or a backup being inspected: it takes no appends."""


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
