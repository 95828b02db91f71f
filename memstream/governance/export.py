"""Compliance exports: records as JSON Lines or CSV, written as they come.

The audit trail, the permission report and the access log export through here: one
function that turns msgspec Structs into lines of either format (CSV through the standard
``csv`` module: quoting, embedded newlines), so a face can stream them (HTTP) or write them
to a file (CLI, SDK) without holding the whole export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from memstream.errors import BadRequest

__all__ = ["FORMATS", "MEDIA_TYPES", "lines", "check_format"]

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
_encode = msgspec.json.Encoder().encode


def check_format(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise BadRequest(f"format must be jsonl or csv, not {fmt!r}", field="format")
    return fmt


def _cell(value: Any) -> Any:
    """A CSV cell: lists and dicts as JSON, times as RFC 3339, None as empty."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | dict):
        return _encode(value).decode()
    if isinstance(value, str | int | float | bool):
        return value
    return msgspec.to_builtins(value)


def lines(records: Iterable[msgspec.Struct], fmt: str, columns: tuple[str, ...]) -> Iterator[str]:
    """``records`` as lines of ``fmt``: JSON objects one a line, or CSV with a header row
    of ``columns`` (the Struct's fields, in order)."""
    check_format(fmt)
    if fmt == "jsonl":
        for r in records:
            yield _encode(r).decode() + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(columns)
    yield flush()
    for r in records:
        data = msgspec.to_builtins(r)
        writer.writerow([_cell(data.get(c)) for c in columns])
        yield flush()
