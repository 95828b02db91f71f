"""Pub/sub commands: ``subscription`` (create, list, show, delete, seek, parked, unpark),
``subscribe`` (follow a subscription like ``tail -f``; registered with the package's
commands) and ``publication`` (publish, list, show, withdraw). Each works on the store
directly or through the server that holds it, or on a server at ``--url`` (with the token
in ``$MEMSTREAM_TOKEN``).

With ``--json`` a command prints the body the HTTP API answers for the same call (nothing
for a deletion or a withdrawal, which answer 204); ``subscribe --json`` prints each
delivery as one JSON line, the SSE ``data`` of ``GET /v1/subscriptions/{name}/events``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from memstream.schemas.views import (
    Delivery,
    Heartbeat,
    ParkedDelivery,
    PublicationView,
    SubscriptionView,
)

from .common import (
    DEFAULT_STORE,
    JsonOpt,
    StoreOpt,
    UrlOpt,
    app,
    out,
    point_option,
    print_json,
    reported,
    show,
)
from .connect import open_store
from .render import _clip, _when

subscription_app = typer.Typer(
    help="Subscriptions: durable, filtered feeds of the memory updates that concern you.",
    no_args_is_help=True,
)
publication_app = typer.Typer(
    help="Publications: memories of a namespace offered to others under terms.",
    no_args_is_help=True,
)
app.add_typer(subscription_app, name="subscription")
app.add_typer(publication_app, name="publication")

#: Seconds between heartbeats while ``memstream subscribe`` waits (or ``--idle``, if less).
HEARTBEAT = 15.0
#: Deliveries ``memstream subscribe`` prints before it acknowledges them in one call.
ACK_BATCH = 500

NameArg = Annotated[str, typer.Argument(help="The subscription's name.")]
PubNameArg = Annotated[str, typer.Argument(help="The publication's name.")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why (kept in the audit; no personal data).")]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Where to start: now, beginning, a log offset, or an RFC 3339 time.",
    ),
]


def _many(help: str, name: str) -> Any:
    return typer.Option(name, help=f"{help} (repeat for more).")


def start_option(value: str | None, option: str = "--from") -> str | int | datetime | None:
    """``--from``: ``now``, ``beginning``, an offset or a time (checked here, exit 2)."""
    if value is None:
        return None
    if value.strip() in ("now", "beginning"):
        return value.strip()
    try:
        return point_option(value, option)
    except typer.BadParameter as e:
        raise typer.BadParameter(f"{e.message}; or now, or beginning", param_hint=option) from None


def _time_option(value: str | None, option: str) -> datetime | None:
    when = point_option(value, option)
    if isinstance(when, int):
        raise typer.BadParameter(
            f"{value!r} is an offset; expected an RFC 3339 time such as 2026-01-01T12:00:00Z",
            param_hint=option,
        )
    return when


# -- tables ------------------------------------------------------------------------------------


def filter_summary(f: dict[str, Any]) -> str:
    """The conditions a filter sets, in one line (the default outcome left out)."""
    parts = []
    for key, value in f.items():
        if key == "semantic":
            if value:
                said = repr(value["query"]) if value.get("query") else "a vector"
                parts.append(f"meaning ≈ {said} ≥ {value.get('threshold', 0.5)}")
        elif value and not (key == "outcomes" and value == ["accepted"]):
            parts.append(f"{key}={','.join(map(str, value))}")
    return "; ".join(parts) or "everything"


def _start(v: SubscriptionView) -> str:
    if v.start == "offset":
        return f"offset {v.start_offset}"
    if v.start == "time":
        return f"time {_when(v.start_time)}"
    return v.start


def subscription_table(v: SubscriptionView) -> Table:
    t = Table(title=f"subscription {v.name}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    rows: list[tuple[str, str]] = [
        ("owner", v.owner),
        ("filter", filter_summary(v.filter)),
        ("publication", v.publication or ""),
        ("start", _start(v)),
        ("cursor", "" if v.cursor is None else str(v.cursor)),
        ("parked", "" if v.parked is None else str(v.parked)),
        ("view", "yes" if v.view else "no"),
        ("max in flight", str(v.max_in_flight)),
        ("ack timeout", f"{v.ack_timeout:g} s"),
        ("description", v.description or ""),
        ("created", f"{_when(v.created_at)} by {v.created_by}"),
        ("updated", f"{_when(v.updated_at)} by {v.updated_by}"),
    ]
    if v.stats:
        rows.append(("in flight", str(v.stats.get("in_flight", ""))))
    for k, value in rows:
        t.add_row(k, Text(value))
    return t


def subscriptions_table(views: Sequence[SubscriptionView]) -> Table:
    t = Table(title="subscriptions", title_justify="left")
    for col in ("name", "owner", "filter", "start", "cursor", "parked", "description"):
        t.add_column(col, no_wrap=col in ("name", "cursor", "parked"))
    for v in views:
        what = f"publication {v.publication}" if v.publication else filter_summary(v.filter)
        t.add_row(
            Text(v.name), Text(v.owner), Text(what), _start(v),
            "" if v.cursor is None else str(v.cursor), "" if v.parked is None else str(v.parked),
            Text(v.description or ""),
        )  # fmt: skip
    return t


def parked_table(name: str, parked: Sequence[ParkedDelivery]) -> Table:
    t = Table(title=f"parked deliveries of {name}", title_justify="left")
    for col in ("position", "memory", "attempts", "parked at", "reason"):
        t.add_column(col, no_wrap=col != "reason")
    for p in parked:
        t.add_row(str(p.position), Text(p.memory_id), str(p.attempts), _when(p.parked_at),
                  Text(p.reason or ""))  # fmt: skip
    return t


def _selects(p: PublicationView) -> str:
    if p.memory_id:
        return f"{p.namespace}: memory {p.memory_id}"
    if p.tag:
        return f"{p.namespace}: tagged {p.tag}"
    return f"{p.namespace}: every memory"


def _quota(p: PublicationView) -> str:
    return "" if p.max_deliveries is None else f"{p.max_deliveries} per {p.period_seconds} s"


def publication_table(p: PublicationView) -> Table:
    t = Table(title=f"publication {p.name}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("publishes", _selects(p)),
        ("to", ", ".join(p.to)),
        ("expires", _when(p.expires_at)),
        ("deliveries", _quota(p) or "unlimited"),
        ("redact", "yes" if p.redact else "no"),
        ("withdrawn", "yes" if p.withdrawn else "no"),
        ("description", p.description or ""),
        ("published", f"{_when(p.published_at)} by {p.published_by}"),
        ("updated", f"{_when(p.updated_at)} by {p.updated_by}"),
    ]
    for k, value in rows:
        t.add_row(k, Text(value))
    return t


def publications_table(pubs: Sequence[PublicationView]) -> Table:
    t = Table(title="publications", title_justify="left")
    for col in ("name", "publishes", "to", "expires", "deliveries", "state", "description"):
        t.add_column(col, no_wrap=col == "name")
    for p in pubs:
        t.add_row(
            Text(p.name), Text(_selects(p)), Text(", ".join(p.to)), _when(p.expires_at),
            _quota(p), "withdrawn" if p.withdrawn else "published", Text(p.description or ""),
        )  # fmt: skip
    return t


# -- subscription ... ----------------------------------------------------------------------------


@subscription_app.command("create")
def create(
    name: NameArg,
    namespace: Annotated[
        list[str] | None,
        _many("A namespace: user/alice, team/* (team and below), or *", "--namespace"),
    ] = None,
    type_: Annotated[
        list[str] | None, _many("An event type: create, revise, archive, erase, ...", "--type")
    ] = None,
    outcome: Annotated[
        list[str] | None, _many("accepted (the default) or rejected", "--outcome")
    ] = None,
    tag_any: Annotated[
        list[str] | None, _many("A tag; the memory has at least one of them", "--tag-any")
    ] = None,
    tag_all: Annotated[
        list[str] | None, _many("A tag; the memory has all of them", "--tag-all")
    ] = None,
    state: Annotated[
        list[str] | None, _many("A lifecycle state: active, archived, ...", "--state")
    ] = None,
    kind: Annotated[list[str] | None, _many("A memory kind", "--kind")] = None,
    actor: Annotated[list[str] | None, _many("Who wrote the event", "--actor")] = None,
    memory: Annotated[list[str] | None, _many("A memory id", "--memory")] = None,
    query: Annotated[
        str | None,
        typer.Option(help="Memories whose text means something close to this text."),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(min=-1.0, max=1.0, help="With --query: the cosine similarity needed."),
    ] = 0.5,
    from_: FromOpt = None,
    view: Annotated[
        bool, typer.Option("--view", help="Each delivery carries the memory's current view.")
    ] = False,
    max_in_flight: Annotated[
        int,
        typer.Option(min=1, max=100_000, help="Deliveries awaiting acknowledgement, at most."),
    ] = 1_000,
    ack_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=86_400,
            help="Seconds before an unacknowledged delivery is delivered again.",
        ),  # fmt: skip
    ] = 30.0,
    publication: Annotated[
        str | None, typer.Option(help="Subscribe to this publication (its terms apply).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    owner: Annotated[
        str | None,
        typer.Option(help="The principal it delivers as (default: you; another takes admin)."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a subscription, or change one (its cursor stays): every condition given must
    hold."""
    with reported(json_out):
        start = start_option(from_) or "now"
        # a semantic condition needs the store's embedding model (an embedded store)
        with open_store(store, url, create=True, semantic=query is not None) as s:
            v = s.create_subscription(
                name, namespaces=namespace, types=type_, outcomes=outcome, memory_ids=memory,
                tags_any=tag_any, tags_all=tag_all, states=state, kinds=kind, actors=actor,
                query=query, threshold=threshold, start=start, view=view,
                max_in_flight=max_in_flight, ack_timeout=ack_timeout, publication=publication,
                description=description, owner=owner,
            )  # fmt: skip
        if json_out:
            print_json(v)
        else:
            show(subscription_table(v))


@subscription_app.command("list")
def list_subscriptions(
    store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, json_out: JsonOpt = False
) -> None:
    """The subscriptions you own (every one, for an admin)."""
    with reported(json_out), open_store(store, url) as s:
        views = s.subscriptions()
        if json_out:
            print_json({"subscriptions": views})
        else:
            show(subscriptions_table(views))


@subscription_app.command("show")
def show_subscription(
    name: NameArg, store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, json_out: JsonOpt = False
) -> None:
    """A subscription: its filter, its cursor, what is parked."""
    with reported(json_out), open_store(store, url) as s:
        v = s.get_subscription(name)
        if json_out:
            print_json(v)
        else:
            show(subscription_table(v))


@subscription_app.command("delete")
def delete(
    name: NameArg,
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete a subscription: its consumers stop, its cursor and parked list go."""
    with reported(json_out), open_store(store, url) as s:
        s.delete_subscription(name, reason=reason)
        if not json_out:
            out.print(Text(f"subscription {name} deleted"))


@subscription_app.command("seek")
def seek(
    name: NameArg,
    from_: Annotated[
        str,
        typer.Option(
            "--from", help="now, beginning, a log offset (delivered next), or an RFC 3339 time."
        ),
    ],
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Move a subscription's cursor: what follows is delivered, again if it was before."""
    with reported(json_out):
        start = start_option(from_)
        with open_store(store, url) as s:
            v = s.seek(name, start)
        if json_out:
            print_json(v)
        else:
            after = -1 if v.cursor is None else v.cursor
            out.print(Text(f"subscription {name}: delivers from offset {after + 1} on"))


@subscription_app.command("parked")
def parked(
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 1_000,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The deliveries a consumer rejected (nack), with its reasons, oldest first."""
    with reported(json_out), open_store(store, url) as s:
        got = s.parked(name, limit=limit)
        if json_out:
            print_json({"parked": got})
        else:
            show(parked_table(name, got))


@subscription_app.command("unpark")
def unpark(
    name: NameArg,
    positions: Annotated[list[int], typer.Argument(min=0, help="The parked positions.")],
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove parked deliveries (handled by hand)."""
    with reported(json_out), open_store(store, url) as s:
        n = s.unpark(name, positions)
        if json_out:
            print_json({"unparked": n})
        else:
            out.print(Text(f"{n} parked deliveries of {name} removed"))


# -- subscribe -------------------------------------------------------------------------------------


class _Stop:
    """Ctrl-C and SIGTERM: at once while waiting; after the batch being printed and
    acknowledged otherwise (what was printed is acknowledged)."""

    def __init__(self) -> None:
        self.busy = False
        self.asked = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.asked = True
        if not self.busy:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False


def delivery_line(d: Delivery) -> Text:
    """A delivery for people: position, type, namespace, memory id, and the text's head."""
    ev = d.event
    payload = ev.get("payload")
    said: str | None = None
    if d.kind == "tombstone":
        said = "(tombstone: content erased)"
    elif isinstance(payload, dict):
        said = payload.get("text") if isinstance(payload.get("text"), str) else None
        if said is None and d.memory is not None:
            said = d.memory.text
        if said is None and isinstance(payload.get("reason"), str):
            said = f"({payload['reason']})"
    line = Text(f"{d.position:>8}  ", style="bold")
    line.append(f"{ev.get('type', '?'):<8}  ")
    line.append(f"{ev.get('namespace', '')}  ")
    line.append(f"{ev.get('memory_id', '')}  ", style="cyan")
    if said is not None:
        line.append_text(_clip(said, 100))
    if d.attempt > 1:
        line.append(f"  (attempt {d.attempt})", style="yellow")
    if d.provenance is not None:
        line.append(f"  [publication {d.provenance.publication}]", style="dim")
    return line


def _heartbeat_line(h: Heartbeat) -> Text:
    return Text(
        f"heartbeat: looked at up to {h.position} of {h.head}, cursor {h.cursor}, "
        f"{h.in_flight} in flight",
        style="dim",
    )


def _emit(items: Sequence[Delivery | Heartbeat], json_out: bool) -> None:
    """Print ``items``, all of them, before returning (raises BrokenPipeError if the
    reader went away)."""
    if json_out:
        text = "".join(msgspec.json.encode(d).decode() + "\n" for d in items)
    else:
        with out.capture() as captured:
            for d in items:
                line = delivery_line(d) if isinstance(d, Delivery) else _heartbeat_line(d)
                out.print(line, soft_wrap=True)
        text = captured.get()
    _write_all(text)


def _write_all(text: str) -> None:
    """Write ``text`` to stdout whole. A signal that interrupts a write to a pipe makes it
    return short, and an unbuffered stdout (``PYTHONUNBUFFERED``) would drop the rest:
    the bytes go out here through the file descriptor until every one is written."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured, in a test)
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    data = memoryview(text.encode(stream.encoding or "utf-8", errors="replace"))
    while data:
        data = data[os.write(fd, data) :]


def _take(sub: Any, timeout: float) -> Delivery | Heartbeat | None:
    """The subscriber's next item; None if a client gave nothing within ``timeout``."""
    try:
        return sub.next(timeout=timeout)
    except TimeoutError:
        return None


def follow(
    s: Any,
    name: str,
    *,
    json_out: bool = False,
    heartbeats: bool = False,
    max_deliveries: int | None = None,
    idle: float | None = None,
    stop: _Stop | None = None,
) -> int:
    """Print subscription ``name``'s deliveries as they come, each batch flushed and then
    acknowledged, until ``max_deliveries``, ``idle`` seconds with none, or ``stop``; the
    number printed."""
    stop = stop or _Stop()
    beat = HEARTBEAT if idle is None else max(0.05, min(HEARTBEAT, idle))
    sub = s.subscribe(name, heartbeat=beat)
    printed = 0
    last = time.monotonic()
    try:
        while not stop.asked and (max_deliveries is None or printed < max_deliveries):
            wait = beat if idle is None else max(0.0, min(beat, last + idle - time.monotonic()))
            item = _take(sub, wait)
            if not isinstance(item, Delivery):
                if heartbeats and isinstance(item, Heartbeat):
                    with stop.deferred():
                        _emit([item], json_out)
                if idle is not None and time.monotonic() - last >= idle:
                    break
                continue
            with stop.deferred():
                batch = [item]
                room = ACK_BATCH if max_deliveries is None else max_deliveries - printed
                while len(batch) < min(ACK_BATCH, room):
                    more = _take(sub, 0.0)  # what is ready now, without waiting
                    if not isinstance(more, Delivery):
                        break
                    batch.append(more)
                _emit(batch, json_out)
                sub.ack(*(d.position for d in batch))
            printed += len(batch)
            last = time.monotonic()
    finally:
        sub.close()
    return printed


def _quiet_stdout() -> None:
    """The reader of stdout went away (``| head``): nothing more is written there."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def subscribe(
    name: NameArg,
    from_: FromOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Each delivery as one JSON line (the SSE data).")
    ] = False,
    heartbeats: Annotated[
        bool, typer.Option("--heartbeats", help="Print heartbeats too (nothing to deliver).")
    ] = False,
    max_: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many deliveries.")
    ] = None,
    idle: Annotated[
        float | None,
        typer.Option(min=0.0, help="Stop after this many seconds with nothing delivered."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
) -> None:
    """Follow a subscription like tail -f: each delivery printed, then acknowledged.

    Ctrl-C stops (what was printed is acknowledged); what was not is delivered again to the
    next consumer."""
    stop = _Stop()
    with reported(json_out):
        start = start_option(from_)
        with _opened_for(store, url, name) as s:
            if start is not None:
                s.seek(name, start)
            try:
                with stop.installed():
                    follow(
                        s, name, json_out=json_out, heartbeats=heartbeats,
                        max_deliveries=max_, idle=idle, stop=stop,
                    )  # fmt: skip
            except KeyboardInterrupt:
                pass  # Ctrl-C while waiting: nothing was printed that is not acknowledged
            except BrokenPipeError:
                _quiet_stdout()  # the batch being printed stays unacknowledged


@contextlib.contextmanager
def _opened_for(store: Any, url: str | None, name: str) -> Iterator[Any]:
    """The store, with its search indexes when subscription ``name`` compares meanings
    (an embedded store matches them itself)."""
    with open_store(store, url) as s:
        from memstream.sdk import MemoryStore

        if not isinstance(s, MemoryStore) or not s.get_subscription(name).filter.get("semantic"):
            yield s
            return
    with open_store(store, url, semantic=True) as s:
        yield s


# -- publication ... -----------------------------------------------------------------------------


@publication_app.command("publish")
def publish(
    name: PubNameArg,
    namespace: Annotated[str, typer.Option(help="The namespace whose memories it publishes.")],
    to: Annotated[
        list[str],
        typer.Option(
            help="Who may subscribe: a principal, group:<name>, or * (repeat for more)."
        ),  # fmt: skip
    ],
    tag: Annotated[str | None, typer.Option(help="Only the memories with this tag.")] = None,
    memory: Annotated[str | None, typer.Option(help="Only this memory.")] = None,
    expires: Annotated[
        str | None, typer.Option(help="Nothing is delivered after this RFC 3339 time.")
    ] = None,
    max_deliveries: Annotated[
        int | None, typer.Option(min=1, help="Deliveries per period to each subscriber.")
    ] = None,
    period: Annotated[
        int, typer.Option(min=1, help="The period of --max-deliveries, in seconds.")
    ] = 86_400,
    redact: Annotated[
        bool, typer.Option("--redact", help="Replace sensitive values in what goes out.")
    ] = False,
    description: Annotated[str | None, typer.Option(help="What it offers.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish the memories of a namespace (or a tag, or one memory) to others under terms;
    again under the same name to revise the terms."""
    with reported(json_out):
        when = _time_option(expires, "--expires")
        with open_store(store, url, create=True) as s:
            p = s.publish(
                name, namespace, to, tag=tag, memory_id=memory, expires_at=when,
                max_deliveries=max_deliveries, period_seconds=period, redact=redact,
                description=description,
            )  # fmt: skip
        if json_out:
            print_json(p)
        else:
            show(publication_table(p))


@publication_app.command("list")
def list_publications(
    store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, json_out: JsonOpt = False
) -> None:
    """The publications you may see: those published to you, those you administer."""
    with reported(json_out), open_store(store, url) as s:
        pubs = s.publications()
        if json_out:
            print_json({"publications": pubs})
        else:
            show(publications_table(pubs))


@publication_app.command("show")
def show_publication(
    name: PubNameArg, store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, json_out: JsonOpt = False
) -> None:
    """A publication and its terms."""
    with reported(json_out), open_store(store, url) as s:
        p = s.get_publication(name)
        if json_out:
            print_json(p)
        else:
            show(publication_table(p))


@publication_app.command("withdraw")
def withdraw(
    name: PubNameArg,
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a publication: nothing more of it is delivered."""
    with reported(json_out), open_store(store, url) as s:
        s.withdraw(name, reason=reason)
        if not json_out:
            out.print(Text(f"publication {name} withdrawn"))


__all__ = [
    "delivery_line",
    "filter_summary",
    "follow",
    "publication_app",
    "subscription_app",
]
