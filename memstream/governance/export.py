"""Compliance exports: records as JSON Lines or CSV, streamed, and written to a file whole.

The audit trail, the permission report and the access log export through here. Records
(msgspec Structs) become text chunks of either format, CSV through the standard ``csv``
module (quoting, embedded newlines; lists and objects as JSON text, times as RFC 3339), so
a face can stream them (HTTP) or write them (CLI, SDK) without holding the whole export;
:func:`write_export` writes a file whole or not at all and counts the records.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec

from memstream import validation as check
from memstream.errors import BadRequest

__all__ = ["FORMATS", "MEDIA_TYPES", "check_format", "csv_rows", "lines", "write_export"]

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
_encode = msgspec.json.Encoder().encode


def check_format(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise BadRequest(f"format must be jsonl or csv, not {fmt!r}", field="format")
    return fmt


def cells(record: msgspec.Struct) -> list[Any]:
    """A record as CSV cells, in field order: lists and objects as JSON text, times as
    RFC 3339, None as empty."""
    out = []
    for value in msgspec.to_builtins(record).values():
        out.append(_encode(value).decode() if isinstance(value, list | dict) else value)
    return out


def csv_rows(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text (one line per row, ``\\n`` ended)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def lines(records: Iterable[msgspec.Struct], fmt: str, columns: tuple[str, ...]) -> Iterator[str]:
    """``records`` as chunks of ``fmt``: one JSON object a line, or CSV with a header row of
    ``columns`` (the records' fields, in order)."""
    check_format(fmt)
    if fmt == "csv":
        yield csv_rows([columns])
    for r in records:
        yield csv_rows([cells(r)]) if fmt == "csv" else _encode(r).decode() + "\n"


class _Counter:
    """Counts the records of an export's text as it streams: in JSON Lines one per line;
    in CSV one per line ended outside quotes, less the header."""

    def __init__(self, fmt: str):
        self.csv = fmt == "csv"
        self.lines = 0
        self.quoted = False

    def feed(self, chunk: str) -> None:
        if not self.csv or (not self.quoted and '"' not in chunk):
            self.lines += chunk.count("\n")
            return
        parts = chunk.split('"')
        for i, part in enumerate(parts):
            if not self.quoted:
                self.lines += part.count("\n")
            if i < len(parts) - 1:
                self.quoted = not self.quoted

    @property
    def records(self) -> int:
        return max(0, self.lines - 1) if self.csv else self.lines


def write_export(chunks: Iterable[str], out: Any, fmt: str) -> int:
    """Write an export's text to ``out`` (a path, or a text stream such as ``sys.stdout``);
    the number of records written. A path is written whole or not at all (a temporary file
    beside it, renamed when complete); one that cannot be written is a
    :class:`BadRequest` naming ``out``."""
    counter = _Counter(fmt)
    if hasattr(out, "write") and not isinstance(out, str | os.PathLike):
        for chunk in chunks:
            out.write(chunk)
            counter.feed(chunk)
        if hasattr(out, "flush"):
            out.flush()
        return counter.records
    path = check.path(out, "out")
    if path.is_dir():
        raise BadRequest(f"out: {path} is a directory; name a file to write", field="out")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def cannot(e: OSError) -> BadRequest:
        return BadRequest(f"cannot write the export to {path}: {e.strerror or e}", field="out")

    try:
        f = open(tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise cannot(e) from None
    try:
        with f:
            for chunk in chunks:
                try:
                    f.write(chunk)
                except OSError as e:
                    raise cannot(e) from None
                counter.feed(chunk)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise cannot(e) from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass  # renamed into place (or never made)
    return counter.records
