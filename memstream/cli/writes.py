"""Writing commands: ``publish`` (events from a file or stdin, all validated first) and
``erase`` (one memory, or every memory of a subject)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from memstream.errors import MalformedEvent
from memstream.schemas.codec import DEFAULT_MAX_EVENT_BYTES, EventCodec
from memstream.schemas.events import default_registry
from memstream.schemas.memcube import Outcome
from memstream.streams.kafka.settings import KafkaSettings

from .common import (
    DEFAULT_STORE,
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_REJECTED,
    CliError,
    JsonOpt,
    MaxEventOpt,
    StoreOpt,
    UrlOpt,
    out,
    print_json,
    progress_bar,
    reported,
    setting,
)
from .connect import kafka_store, open_store
from .render import outcomes_table


def _split_events(data: bytes) -> tuple[list[bytes], bool, list[int] | None]:
    """Split input into event documents: (docs, single, line numbers for JSON Lines).

    Accepts one JSON object, a JSON array of objects, or JSON Lines (one object a line).
    """
    stripped = data.strip()
    if stripped[:1] == b"[":
        try:
            return (
                [bytes(r) for r in msgspec.json.decode(stripped, type=list[msgspec.Raw])],
                False,
                None,
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise MalformedEvent(f"not valid JSON ({e})") from None
    if stripped[:1] != b"{":
        EventCodec(default_registry()).decode(stripped)  # raises the codec's own message
        raise MalformedEvent("expected a JSON object, an array of objects, or JSON Lines")
    try:
        single: bytes | None = bytes(msgspec.json.decode(stripped, type=msgspec.Raw))
    except msgspec.DecodeError:
        single = None  # more than one document: JSON Lines
    if single is not None:
        return [single], True, None
    docs: list[bytes] = []
    lines: list[int] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            msgspec.json.decode(line, type=msgspec.Raw)
        except msgspec.DecodeError as e:
            raise MalformedEvent(
                f"line {number} is not valid JSON ({e})", index=len(docs)
            ) from None
        docs.append(line.strip())
        lines.append(number)
    return docs, False, lines


def _relocate(e: MalformedEvent, start: int, lines: list[int] | None) -> MalformedEvent:
    """A chunk's error, with the index (and line) in the whole input."""
    if e.index is None:
        return e
    index = e.index + start
    detail = e.detail + (f" (line {lines[index]})" if lines else "")
    return MalformedEvent(detail, field=e.field, index=index)


def publish(
    source: Annotated[
        str, typer.Argument(help="File of events (JSON object, array, or JSON Lines); - is stdin.")
    ] = "-",
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    max_event_bytes: MaxEventOpt = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Events per append (each batch is atomic).")
    ] = 1000,
    kafka: Annotated[
        str | None,
        setting(
            KafkaSettings,
            "bootstrap",
            "--kafka",
            help="Publish to the Kafka runtime at these brokers (host:port) instead of a store.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Append events; print their outcomes. Exit 1 if any was rejected, 2 if malformed."""
    with reported(json_out):
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            path = Path(source)
            if not path.is_file():
                raise CliError(f"no such file: {path}", EXIT_BAD_INPUT, {"error": "no_file"})
            data = path.read_bytes()
        docs, single, lines = _split_events(data)
        if not docs:
            raise MalformedEvent("no events in the input")
        if single:
            chunks = [(0, docs[0])]
        else:
            chunks = [
                (i, b"[" + b",".join(docs[i : i + batch_size]) + b"]")
                for i in range(0, len(docs), batch_size)
            ]
        # Validate everything before appending anything: bad input appends nothing.
        codec = EventCodec(default_registry(), max_event_bytes or DEFAULT_MAX_EVENT_BYTES)
        for start, body in chunks:
            try:
                codec.decode(body)
            except MalformedEvent as e:
                raise _relocate(e, start, lines) from None
        outcomes: list[Outcome] = []
        opened = (
            kafka_store(kafka)
            if kafka
            else open_store(store, url, create=True, max_event_bytes=max_event_bytes)
        )
        with opened as target:
            with progress_bar(enabled=len(chunks) > 1) as progress:
                tick = progress("publishing", len(docs))
                for start, body in chunks:
                    try:
                        got = target.publish_json(body)
                    except MalformedEvent as e:
                        moved = _relocate(e, start, lines)
                        if start:
                            moved = MalformedEvent(
                                f"{moved.detail} (the {start} events before it were appended)",
                                field=moved.field,
                                index=moved.index,
                            )
                        raise moved from None
                    outcomes.extend(got)
                    tick(len(got))
        rejected = [o for o in outcomes if not o.accepted]
        if json_out:
            print_json(
                {
                    "outcomes": [o.public() for o in outcomes],
                    "accepted": len(outcomes) - len(rejected),
                    "rejected": len(rejected),
                }
            )
        else:
            shown = outcomes if len(outcomes) <= 50 else rejected[:50]
            if shown:
                out.print(outcomes_table(shown, "outcomes" if shown is outcomes else "rejected"))
            out.print(
                f"{len(outcomes) - len(rejected)} accepted, {len(rejected)} rejected"
                + (f"; last offset {max(o.offset for o in outcomes)}" if outcomes else "")
            )
    raise typer.Exit(EXIT_REJECTED if rejected else EXIT_OK)


def erase(
    memory_id: Annotated[
        str | None, typer.Argument(help="The memory to erase; no other memory is touched.")
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject", help="Erase every memory of this subject instead (no MEMORY_ID)."
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            help="With --subject: the namespace the erase is logged in (default: the subject)."
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Why; it stays readable in the audit: no personal data in it."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Crypto-shred one memory (MEMORY_ID), or every memory of a subject (--subject);
    print what was erased. Exit 1 if the erase was refused."""
    with reported(json_out):
        if (memory_id is None) == (subject is None):
            raise CliError(
                "name what to erase: a MEMORY_ID (that memory alone) or --subject SUBJECT "
                "(every memory of the subject), not both",
                EXIT_BAD_INPUT,
                {"error": "bad_input"},
            )
        if namespace is not None and subject is None:
            raise CliError(
                "--namespace goes with --subject (a memory's namespace is known)",
                EXIT_BAD_INPUT,
                {"error": "bad_input"},
            )
        with open_store(store, url) as target:
            if subject is not None:
                o = target.erase_subject(subject, namespace=namespace, reason=reason)
                scope, what = "subject", f"subject {subject}"
            else:
                assert memory_id is not None
                o = target.erase(memory_id, reason=reason)
                scope, what = "memory", f"memory {memory_id}"
        if json_out:
            print_json({"scope": scope, "erased": list(o.erased), "outcome": o.public()})
        else:
            out.print(outcomes_table([o]))
            out.print(
                f"erased {what} (scope {scope}): {len(o.erased)} "
                f"memor{'y' if len(o.erased) == 1 else 'ies'}"
                + (f": {', '.join(o.erased)}" if o.erased else "")
                + f"; offset {o.offset}"
            )
    raise typer.Exit(EXIT_OK)
