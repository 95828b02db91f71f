"""The SDK over HTTP: :class:`HttpMemoryStore` talks to a running ``memstream serve``.

It subclasses :class:`memstream.operations.Operations`, so every operation method of the embedded
store (``create``, ``revise``, ``merge``, ``archive``, ...) works unchanged: the methods
build typed events locally and :meth:`HttpMemoryStore.append` POSTs their wire JSON. The
server decodes them with the same :class:`EventCodec` the embedded store uses, so a
malformed event raises the same :class:`MalformedEvent` (field and index included) and a
rejection the same typed :class:`Rejected` subclass. Reads decode the server's JSON into
the same msgspec types (:class:`Memory`, :class:`Version`, :class:`AuditPage`) the
embedded store returns (:class:`~memstream.client.reads.HttpReads`, which the Kafka SDK
shares), so code written against one backend runs against the other.

Why a separate class and not a transport inside :class:`MemoryStore`: the embedded store
owns files and a projector thread; a client owns a connection pool. Sharing the operation
layer (``Operations``) and the return types is what keeps them interchangeable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import msgspec

from memstream.errors import MalformedEvent, NotCaughtUp, UnknownMemory
from memstream.governance.access_log import AccessLogReads, AccessPage, AccessQuery
from memstream.operations import Operations, raise_rejections
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Context, Event, Registry, default_registry
from memstream.schemas.memcube import Outcome
from memstream.streams.embedded import ProgressFactory
from memstream.wire import (
    PRINCIPAL_HEADER,
    AddRequest,
    ChangeRequest,
    EraseSubjectRequest,
    ReviseRequest,
    format_point,
)

from .governance import HttpGovernance
from .pubsub import HttpPubSub
from .reads import HttpReads, memory_path
from .transport import DEFAULT_TIMEOUT, LONG_TIMEOUT, ServerUnavailable, body_of, error_of

if TYPE_CHECKING:
    from datetime import datetime

    from memstream.governance.retention import RetentionReport
    from memstream.sdk import MemoryStore

__all__ = ["HttpMemoryStore"]

#: keyword arguments the one-line routes take besides the body's own fields; a call with any
#: other (``event_id``, ``occurred_at``, ``correlation_id``, ``actor``, a payload field such as
#: ``kind`` or ``vector``) builds its event here and posts it to ``/v1/events``
_ONE_LINE = {"context", "namespace", "reason", "expected_version", "subject", "memory_id"}


def _plain(*texts: Any, **kw: Any) -> bool:
    """Whether a call's arguments are of the types the one-line routes take: anything else
    builds the event here, so it is refused as the embedded store refuses it (the field's
    JSON path in a :class:`MalformedEvent`)."""
    if not all(isinstance(t, str) for t in texts):
        return False
    for name, value in kw.items():
        if value is None:
            continue
        if name == "tags" and not (
            isinstance(value, list | tuple) and all(isinstance(t, str) for t in value)
        ):
            return False
        if name == "metadata" and not isinstance(value, dict):
            return False
        if name == "context" and not isinstance(value, dict | Context):
            return False
        if name == "expected_version" and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        if name in ("namespace", "reason", "subject", "memory_id") and not isinstance(value, str):
            return False
    return True


_access_page = msgspec.json.Decoder(AccessPage)


def _access_params(q: AccessQuery) -> dict[str, Any]:
    return {
        "principal": q.principal, "namespace": q.namespace, "memory_id": q.memory_id,
        "action": q.action, "since": format_point(q.since) if q.since else None,
        "until": format_point(q.until) if q.until else None, "after": q.after,
    }  # fmt: skip


#: The environment variable a client takes its bearer token from when given none.
TOKEN_ENV = "MEMSTREAM_TOKEN"


class HttpMemoryStore(Operations, HttpReads, HttpGovernance, HttpPubSub, AccessLogReads):
    """A memory store served by ``memstream serve``, reached over HTTP.

    Use :meth:`connect` (it checks the server answers) and close it, or use it as a
    context manager. Methods and return types are those of :class:`MemoryStore`.
    """

    def __init__(
        self,
        url: str,
        *,
        actor: str = "sdk",
        timeout: float = DEFAULT_TIMEOUT,
        registry: Registry | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ):
        from memstream import __version__

        self.url = url.rstrip("/")
        self.actor = actor
        self.registry = registry or default_registry()
        self.codec = EventCodec(self.registry)
        self.timeout = timeout
        #: The highest offset this client has seen its writes land at (read-your-writes).
        self.last_offset: int | None = None
        self._http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"user-agent": f"memstream/{__version__}", **(headers or {})},
        )
        token = token or os.environ.get(TOKEN_ENV) or None
        if token is not None:
            self._http.headers["authorization"] = f"Bearer {token}"

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        actor: str = "sdk",
        timeout: float = DEFAULT_TIMEOUT,
        registry: Registry | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> HttpMemoryStore:
        """Connect to the server at ``url`` and check that it answers ``/health``.

        ``token``: the bearer token every request carries (default: ``$MEMSTREAM_TOKEN``);
        a server with authentication on answers 401 without one.
        Failing here, with the URL in the message, beats failing on the first write.
        """
        store = cls(
            url, actor=actor, timeout=timeout, registry=registry, headers=headers, token=token
        )
        try:
            store.health()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpMemoryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpMemoryStore({self.url!r}, actor={self.actor!r})"

    # -- service -------------------------------------------------------------------------------

    @property
    def head(self) -> int:
        """The last offset in the server's log (``-1``: empty)."""
        return int(self.ready()["head"])

    def flush(self, timeout: float = LONG_TIMEOUT) -> None:
        """Wait until the server has projected everything appended so far."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.ready()
            if state["lag"] <= 0:
                return
            if time.monotonic() > deadline:
                raise NotCaughtUp(state["head"], state["projected"], timeout)
            time.sleep(0.05)

    # -- writes --------------------------------------------------------------------------------

    def _wire(self, e: Event | dict[str, Any] | bytes | str) -> bytes:
        if isinstance(e, Event):
            return self.codec.encode(e)
        if isinstance(e, bytes):
            return e
        if isinstance(e, str):
            return e.encode()
        return msgspec.json.encode(e)

    def append(
        self, events: Sequence[Event | dict[str, Any] | bytes], *, raise_on_reject: bool = False
    ) -> list[Outcome]:
        """Append a batch atomically on the server (all events or none); one outcome each.

        Events may be :class:`Event` objects, wire dicts or JSON bytes. A malformed event
        refuses the whole batch (:class:`MalformedEvent` names its index and field).
        """
        docs = [self._wire(e) for e in events]
        if not docs:
            raise MalformedEvent("empty batch: send at least one event")
        body = docs[0] if len(docs) == 1 else b"[" + b",".join(docs) + b"]"
        return self.publish_json(body, raise_on_reject=raise_on_reject)

    def publish_json(self, data: bytes | str, *, raise_on_reject: bool = False) -> list[Outcome]:
        """POST wire JSON (one event object or an array of them) to ``/v1/events``."""
        raw = data.encode() if isinstance(data, str) else data
        resp = self._request("POST", "/v1/events", content=raw)
        if resp.status_code not in (200, 409) or "outcomes" not in (body := body_of(resp)):
            raise error_of(resp)
        outcomes = [Outcome.from_public(o) for o in body["outcomes"]]
        if outcomes:
            top = max(o.offset for o in outcomes)
            self.last_offset = top if self.last_offset is None else max(self.last_offset, top)
        return raise_rejections(outcomes, raise_on_reject)

    # The operations the server builds events for (``POST /v1/memories`` and friends); the
    # others, and calls with what those routes do not take, build the event here.

    def _operation(self, path: str, body: Any, *, memory_id: str | None = None) -> Outcome:
        content = msgspec.json.encode(body)
        resp = self._request("POST", path, content=content)
        if resp.status_code == 404 and body_of(resp).get("error") == "not_found":
            raise UnknownMemory(
                {
                    "type": path.rsplit("/", 1)[-1], "code": "unknown_memory",
                    "memory_id": memory_id, "offset": None,
                    "reason": f"memory {memory_id} does not exist; pass namespace= to record "
                    "the attempt in the audit anyway",
                }
            )  # fmt: skip
        o = Outcome.from_public(body_of(self._ok(resp)))
        self.last_offset = o.offset if self.last_offset is None else max(self.last_offset, o.offset)
        return o

    def create(self, namespace: str, text: str, **kw: Any) -> Outcome:  # type: ignore[override]
        simple = {"tags", "metadata", "subject", "memory_id", "context"}
        if set(kw) - simple or not _plain(namespace, text, **kw):
            return super().create(namespace, text, **kw)
        tags, metadata = list(kw.pop("tags", ())), kw.pop("metadata", None) or {}
        body = AddRequest(namespace=namespace, text=text, tags=tags, metadata=metadata, **kw)
        return self._operation("/v1/memories", body)

    def revise(self, memory_id: str, text: str, **kw: Any) -> Outcome:  # type: ignore[override]
        simple = {"tags", "metadata"} | _ONE_LINE - {"subject", "memory_id"}
        if set(kw) - simple or not _plain(memory_id, text, **kw):
            return super().revise(memory_id, text, **kw)
        body = ReviseRequest(text=text, **kw)
        return self._operation(memory_path(memory_id) + "/revise", body, memory_id=memory_id)

    def _change(self, operation: str, memory_id: str, kw: dict[str, Any]) -> Outcome:
        if set(kw) - (_ONE_LINE - {"subject", "memory_id"}) or not _plain(memory_id, **kw):
            return getattr(super(), operation)(memory_id, **kw)
        body = ChangeRequest(**kw)
        return self._operation(f"{memory_path(memory_id)}/{operation}", body, memory_id=memory_id)

    def archive(self, memory_id: str, **kw: Any) -> Outcome:  # type: ignore[override]
        return self._change("archive", memory_id, kw)

    def restore(self, memory_id: str, **kw: Any) -> Outcome:  # type: ignore[override]
        return self._change("restore", memory_id, kw)

    def erase(self, memory_id: str, **kw: Any) -> Outcome:  # type: ignore[override]
        return self._change("erase", memory_id, kw)

    def erase_subject(self, subject: str, **kw: Any) -> Outcome:  # type: ignore[override]
        if set(kw) - {"namespace", "reason", "context"} or not _plain(subject, **kw):
            return super().erase_subject(subject, **kw)
        body = EraseSubjectRequest(**kw)
        return self._operation("/v1/subjects/" + quote(subject, safe="/:@") + "/erase", body)

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        """(namespace, subject) of a memory, read through the projection.

        The projection trails the log, so the read waits for this client's own last write
        (read-your-writes); a memory another client just created may still be on its way,
        so a miss is checked once more at the server's head before it counts as unknown.
        """
        m = self.get(memory_id, min_offset=self.last_offset)
        if m is None:
            head = self.head
            if head >= 0 and head != self.last_offset:
                m = self.get(memory_id, min_offset=head)
        return (m.namespace, m.subject) if m is not None else None

    # -- governance -----------------------------------------------------------------------------

    def run_retention(
        self, now: datetime | str | None = None, *, dry_run: bool = False
    ) -> RetentionReport:
        """One pass of the server's retention scheduler (see
        :meth:`memstream.MemoryStore.run_retention`)."""
        from memstream import validation
        from memstream.governance.retention import RetentionReport

        when = validation.time(now, "now")
        validation.boolean(dry_run, "dry_run")
        content = msgspec.json.encode(
            {"now": when.isoformat() if when is not None else None, "dry_run": dry_run}
        )
        timeout = max(self.timeout, LONG_TIMEOUT)
        resp = self._request("POST", "/v1/retention/run", content=content, timeout=timeout)
        return msgspec.json.decode(self._ok(resp).content, type=RetentionReport)

    # -- the access log ---------------------------------------------------------------------------

    def _access_log(self, q: AccessQuery) -> AccessPage:
        params = {**_access_params(q), "limit": q.limit}
        resp = self._request("GET", "/v1/access-log", params=params)
        return _access_page.decode(self._ok(resp).content)

    def _export_access_log(self, q: AccessQuery, fmt: str) -> Iterator[str]:
        """The export's text as the server streams it (the request is sent when the first
        chunk is asked for; an error answer raises then, before any text)."""
        params = {k: v for k, v in {**_access_params(q), "format": fmt}.items() if v is not None}
        timeout = httpx.Timeout(max(self.timeout, LONG_TIMEOUT), connect=min(self.timeout, 5.0))
        headers = {PRINCIPAL_HEADER: self.actor}
        try:
            with self._http.stream(
                "GET", "/v1/access-log/export", params=params, headers=headers, timeout=timeout
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_of(resp)
                yield from resp.iter_text()
        except httpx.TransportError as e:
            raise ServerUnavailable(
                f"the export from the memstream server at {self.url} failed "
                f"({e.__class__.__name__}: {e}); check that it runs, and run the export again"
            ) from None

    # -- copies --------------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Have the server persist every projection and leave nothing of an erased memory
        on disk (see :meth:`memstream.MemoryStore.checkpoint`)."""
        timeout = max(self.timeout, LONG_TIMEOUT)
        resp = self._request("POST", "/v1/checkpoint", timeout=timeout)
        return dict(body_of(self._ok(resp)))

    def backup(self, dest: str | Path) -> Path:
        """A consistent copy of the server's log and keys, written by the server.

        ``dest`` is a path on the **server's** filesystem and must be absolute (a relative
        path would land in whatever directory the server was started from).
        """
        content = msgspec.json.encode({"dest": str(dest)})
        timeout = max(self.timeout, LONG_TIMEOUT)
        resp = self._request("POST", "/v1/backup", content=content, timeout=timeout)
        return Path(body_of(self._ok(resp))["dest"])

    def replay(
        self,
        into: str | Path,
        *,
        to: datetime | int | None = None,
        progress: ProgressFactory | None = None,
        semantic: bool = False,
    ) -> MemoryStore:
        """Replay the server's log up to ``to`` into a fresh, read-only store in ``into``.

        The server copies the log prefix consistently (it holds the store); the projection
        is then rebuilt here, in this process, so ``progress`` reports it. ``into`` must be
        an absolute path visible to both (the server writes it, this process opens it).
        The replay's search indexes are built only with ``semantic=True``: they need the
        embedding model, which a replay for get/history/audit does not.
        """
        content = msgspec.json.encode(
            {"into": str(into), "to": format_point(to) if to is not None else None}
        )
        timeout = max(self.timeout, LONG_TIMEOUT)
        resp = self._request("POST", "/v1/replay", content=content, timeout=timeout)
        path = Path(body_of(self._ok(resp))["into"])
        from memstream.sdk import MemoryStore  # the copy is an embedded store, opened here

        return MemoryStore.open(
            path, actor=self.actor, registry=self.registry, progress=progress, semantic=semantic,
            retention=False,
        )  # fmt: skip
