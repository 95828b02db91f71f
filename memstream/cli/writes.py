"""Writing commands: ``add``, ``revise``, ``archive``, ``restore`` and ``erase`` (one line
each; the event is built for you), and ``publish`` (events from a file or stdin, all
validated first). With ``--json`` the one-line commands print exactly the body the HTTP
API answers for the same call: the outcome (:func:`memstream.wire.outcome_body`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from memstream.errors import MalformedEvent
from memstream.schemas.codec import DEFAULT_MAX_EVENT_BYTES, EventCodec
from memstream.schemas.events import default_registry
from memstream.schemas.memcube import Outcome
from memstream.streams.kafka.settings import KafkaSettings
from memstream.wire import outcome_body

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
    point_option,
    print_json,
    progress_bar,
    reported,
    setting,
    show,
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
                show(outcomes_table(shown, "outcomes" if shown is outcomes else "rejected"))
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
            print_json(outcome_body(o))
        else:
            show(outcomes_table([o]))
            out.print(
                f"erased {what} (scope {scope}): {len(o.erased)} "
                f"memor{'y' if len(o.erased) == 1 else 'ies'}"
                + (f": {', '.join(o.erased)}" if o.erased else "")
                + f"; offset {o.offset}"
            )
    raise typer.Exit(EXIT_OK)


# -- one line each: the event is built for you ---------------------------------------------------

ReasonOpt = Annotated[
    str | None,
    typer.Option(help="Why; it stays readable in the audit: no personal data in it."),
]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat).")]
MetaOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--meta",
        help="Metadata as KEY=VALUE (repeat); a VALUE that is JSON (3, true, [1,2]) is "
        "taken as such, anything else as a string.",
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        help="The memory's namespace: needed only to record an attempt on an unknown memory.",
    ),
]
ExpectedOpt = Annotated[
    int | None,
    typer.Option("--expected-version", min=0, help="Refuse unless the memory is at this revision."),
]


def _metadata(pairs: list[str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, not {pair!r}", param_hint="--meta")
        try:
            meta[key] = msgspec.json.decode(value)
        except msgspec.DecodeError:
            meta[key] = value
    return meta


def _done(o: Outcome, json_out: bool, said: str) -> None:
    if json_out:
        print_json(outcome_body(o))
        return
    show(outcomes_table([o]))
    out.print(f"{said}; offset {o.offset}")


def add(
    namespace: Annotated[
        str, typer.Argument(help="Whose memory: user/<id>, agent/<id>, team/<id>...")
    ],
    text: Annotated[str, typer.Argument(help="The memory's content.")],
    tag: TagOpt = None,
    meta: MetaOpt = None,
    subject: Annotated[
        str | None,
        typer.Option(help="Whose data it is (its key seals it); default the namespace."),
    ] = None,
    memory_id: Annotated[
        str | None, typer.Option("--id", help="The memory's id; default a new UUIDv7.")
    ] = None,
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=1, help="Expire it this many seconds from now.")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expire it at this RFC 3339 time.")
    ] = None,
    retention_days: Annotated[
        int | None,
        typer.Option("--retention-days", min=1, help="Erase it this many days after it expires."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a memory from a namespace and a text; print its id and outcome."""
    with reported(json_out):
        metadata = _metadata(meta)
        expires_at = point_option(expires, "--expires")
        if isinstance(expires_at, int):
            raise typer.BadParameter("expected a time with a timezone", param_hint="--expires")
        with open_store(store, url, create=True) as target:
            o = target.create(
                namespace, text, tags=tag or [], metadata=metadata, subject=subject,
                memory_id=memory_id, ttl_seconds=ttl, expires_at=expires_at,
                retention_days=retention_days,
            )  # fmt: skip
        _done(o, json_out, f"added memory {o.memory_id} to {namespace}")


def revise(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    text: Annotated[str, typer.Argument(help="Its new content.")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Its tags from now on (repeat).")
    ] = None,
    meta: MetaOpt = None,
    reason: ReasonOpt = None,
    expected_version: ExpectedOpt = None,
    namespace: NamespaceOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a new version of a memory's content (tags and metadata kept unless given)."""
    with reported(json_out):
        metadata = _metadata(meta) if meta else None
        with open_store(store, url) as target:
            o = target.revise(
                memory_id, text, tags=tag or None, metadata=metadata, reason=reason,
                expected_version=expected_version, namespace=namespace,
            )  # fmt: skip
        _done(o, json_out, f"revised memory {memory_id}: version {o.version}")


def _change(operation: str, done: str) -> Any:
    def command(
        memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
        reason: ReasonOpt = None,
        expected_version: ExpectedOpt = None,
        namespace: NamespaceOpt = None,
        store: StoreOpt = DEFAULT_STORE,
        url: UrlOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        with reported(json_out):
            with open_store(store, url) as target:
                o = getattr(target, operation)(
                    memory_id, reason=reason, expected_version=expected_version,
                    namespace=namespace,
                )  # fmt: skip
            _done(o, json_out, f"{done} memory {memory_id}")

    command.__name__ = operation
    return command


archive = _change("archive", "archived")
archive.__doc__ = "Move a memory to cold storage: out of default search and lists, restorable."
restore = _change("restore", "restored")
restore.__doc__ = "Bring an archived memory back to active."
