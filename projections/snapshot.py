"""Saving an index beside the log: a manifest, written atomically, that says what it covers.

The vector and the keyword index each persist as files plus ``manifest.json``: the format
and version of the files, the log offset the index reflects, and what it was built with.
The manifest is written to a temporary file, synced, renamed over the old one and the
directory synced, so a crash leaves either the old or the new manifest; reading checks the
format and version and answers :class:`IndexUnusable` (the caller rebuilds) for anything
missing, unreadable or of another format.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import IndexUnusable

MANIFEST_NAME = "manifest.json"


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(root: Path, manifest: dict[str, Any], *, tag: str = "") -> None:
    """Replace ``root/manifest.json`` atomically and durably (``tag`` names the temporary
    file, so that writers of different generations never share one)."""
    temporary = root / f"{MANIFEST_NAME}.{tag}.tmp" if tag else root / f"{MANIFEST_NAME}.tmp"
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, root / MANIFEST_NAME)
    fsync_dir(root)


def read_manifest(
    root: Path,
    fmt: str,
    version: int,
    what: str,
    *,
    saved: str = "saved",
    built_with: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``root/manifest.json`` if it is a manifest of format ``fmt`` at ``version`` with an
    integer ``offset``; otherwise :class:`IndexUnusable` saying why (``what``: the kind of
    index, and ``saved``: how it is written, for the messages). ``built_with`` names fields
    that must hold these values (what the index was built with, e.g. its analyzer)."""
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexUnusable(f"no manifest.json: the index was never {saved}", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexUnusable(f"manifest.json is unreadable ({exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise IndexUnusable(f"manifest.json is not a memstream {what} manifest", path)
    if manifest.get("version") != version:
        raise IndexUnusable(f"manifest version {manifest.get('version')!r} is not {version}", path)
    for key, value in (built_with or {}).items():
        if manifest.get(key) != value:
            raise IndexUnusable(
                f"index was built with {key} {manifest.get(key)!r}, this version uses {value!r}",
                path,
            )
    offset = manifest.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise IndexUnusable(f"manifest offset {offset!r} is not an integer", path)
    return manifest
