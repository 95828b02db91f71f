"""The SDK over HTTP: :class:`HttpMemoryStore` talks to a running ``memstream serve``.

It subclasses :class:`memstream.sdk.Operations`, so every operation method of the embedded
store (``create``, ``revise``, ``merge``, ``archive``, ...) works unchanged: the methods
build typed events locally and :meth:`HttpMemoryStore.append` POSTs their wire JSON. The
server decodes them with the same :class:`EventCodec` the embedded store uses, so a
malformed event raises the same :class:`MalformedEvent` (field and index included) and a
rejection the same typed :class:`Rejected` subclass. Reads decode the server's JSON into
the same msgspec types (:class:`Memory`, :class:`Version`, :class:`AuditPage`) the
embedded store returns, so code written against one backend runs against the other.

Why a separate class and not a transport inside :class:`MemoryStore`: the embedded store
owns files and a projector thread; a client owns a connection pool. Sharing the operation
layer (``Operations``) and the return types is what keeps them interchangeable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from memstream.errors import (
    MalformedEvent,
    NotCaughtUp,
    ProjectorFailed,
    StoreReadOnly,
    rejection,
)
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Event, Registry, default_registry
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, SearchHit, Version
from memstream.sdk import MemoryStore, Operations
from memstream.streams.embedded import ProgressFactory
from memstream.streams.log import ChainBreak

__all__ = [
    "DEFAULT_TIMEOUT",
    "HttpMemoryStore",
    "ServerError",
    "ServerUnavailable",
    "format_point",
    "parse_point",
]

#: Seconds a request may take (connect, read, write) before the client gives up.
DEFAULT_TIMEOUT = 30.0
#: Long operations (verify, backup, replay copies) get at least this much time.
LONG_TIMEOUT = 600.0

_json = msgspec.json.Decoder()
_memory = msgspec.json.Decoder(Memory)
_versions = msgspec.json.Decoder(list[Version])


class _Hits(msgspec.Struct):
    hits: list[SearchHit]


_hits = msgspec.json.Decoder(_Hits)
_audit_page = msgspec.json.Decoder(AuditPage)


class ServerUnavailable(ConnectionError):
    """The server could not be reached, or did not answer in time."""


class ServerError(RuntimeError):
    """The server answered with an error this client has no typed exception for."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None):
        self.status = status
        self.body = body or {}
        super().__init__(f"HTTP {status}: {message}")


def parse_point(value: str, field: str = "as_of") -> datetime | int:
    """Parse a point in the log given as text: an integer offset, or an RFC 3339 time.

    A time must carry its timezone (``2026-01-01T12:00:00Z`` or ``+02:00``): a naive time
    is ambiguous across machines, so it is refused with the field's name instead of being
    guessed.
    """
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{field}: {value!r} is neither a log offset (an integer) nor an RFC 3339 time "
            "such as 2026-01-01T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise ValueError(
            f"{field}: {value!r} has no timezone; add one, e.g. {text}Z or {text}+00:00"
        )
    return when


def format_point(value: datetime | int) -> str:
    """The query-string form of an offset or a time (the inverse of :func:`parse_point`)."""
    if isinstance(value, bool) or not isinstance(value, int | datetime):
        raise TypeError(f"expected a datetime or an offset (int), not {type(value).__name__}")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("as_of must carry a timezone, e.g. datetime(..., tzinfo=UTC)")
        return value.isoformat()
    return str(value)


def _body(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = _json.decode(resp.content)
    except msgspec.DecodeError:
        return {"message": resp.text[:500] or resp.reason_phrase}
    return data if isinstance(data, dict) else {"message": str(data)}


def _malformed(body: dict[str, Any]) -> MalformedEvent:
    """Rebuild the server's MalformedEvent (its message already names the batch index)."""
    message = str(body.get("message") or "malformed event")
    index = body.get("index")
    prefix = f"event #{index}: "
    if index is not None and message.startswith(prefix):
        message = message[len(prefix) :]
    return MalformedEvent(message, field=body.get("field"), index=index)


class HttpMemoryStore(Operations):
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

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        actor: str = "sdk",
        timeout: float = DEFAULT_TIMEOUT,
        registry: Registry | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpMemoryStore:
        """Connect to the server at ``url`` and check that it answers ``/health``.

        Failing here, with the URL in the message, beats failing on the first write.
        """
        store = cls(url, actor=actor, timeout=timeout, registry=registry, headers=headers)
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

    # -- transport -----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            return self._http.request(
                method,
                path,
                params=query or None,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as e:
            raise ServerUnavailable(
                f"the memstream server at {self.url} did not answer {method} {path} in time "
                f"({e.__class__.__name__}); it may be overloaded: retry, or raise timeout="
            ) from None
        except httpx.TransportError as e:
            raise ServerUnavailable(
                f"cannot reach the memstream server at {self.url} ({e.__class__.__name__}: "
                f"{e}); start it with `memstream serve`, or check the URL"
            ) from None

    def _fail(self, resp: httpx.Response) -> None:
        """Raise the typed exception for an error response (the same ones as embedded)."""
        body = _body(resp)
        error = body.get("error")
        message = str(body.get("message") or resp.reason_phrase)
        if resp.status_code == 422 and error == "malformed":
            raise _malformed(body)
        if resp.status_code == 413:
            raise MalformedEvent(message, field=body.get("field"), index=body.get("index"))
        if error == "not_caught_up":
            raise NotCaughtUp(int(body["wanted"]), int(body["reached"]), float(body["wait"]))
        if error == "projector_failed":
            raise ProjectorFailed(message)
        if error == "read_only":
            raise StoreReadOnly(message)
        if error == "exists":
            raise FileExistsError(message)
        if resp.status_code == 400:
            raise ValueError(message)
        raise ServerError(resp.status_code, message, body)

    def _ok(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            self._fail(resp)
        return resp

    # -- service -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/health``: the process is up (pid, store path, version)."""
        return _body(self._ok(self._request("GET", "/health")))

    def ready(self) -> dict[str, Any]:
        """``/ready``: head offset, projected offset and lag; raises if the store is not ready."""
        return _body(self._ok(self._request("GET", "/ready")))

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
        if resp.status_code not in (200, 409) or "outcomes" not in (body := _body(resp)):
            self._fail(resp)
            raise AssertionError("unreachable")  # _fail always raises
        outcomes = [msgspec.convert(o, Outcome) for o in body["outcomes"]]
        if outcomes:
            top = max(o.offset for o in outcomes)
            self.last_offset = top if self.last_offset is None else max(self.last_offset, top)
        if raise_on_reject:
            for o in outcomes:
                if not o.accepted:
                    raise rejection(o)
        return outcomes

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

    # -- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _path(memory_id: str) -> str:
        return "/v1/memories/" + quote(memory_id, safe="/:@")

    def get(
        self,
        memory_id: str,
        *,
        version: int | None = None,
        as_of: datetime | int | None = None,
        min_offset: int | None = None,
    ) -> Memory | None:
        """A memory now, at ``version``, or as of a time (``recorded_at``) or an offset."""
        params = {
            "version": version,
            "as_of": format_point(as_of) if as_of is not None else None,
            "min_offset": min_offset,
        }
        resp = self._request("GET", self._path(memory_id), params=params)
        if resp.status_code == 404 and _body(resp).get("error") == "not_found":
            return None
        return _memory.decode(self._ok(resp).content)

    def history(
        self,
        memory_id: str,
        *,
        include_parents: bool = True,
        as_of: datetime | int | None = None,
        min_offset: int | None = None,
    ) -> list[Version]:
        """The version chain, oldest first, with merge parents' chains."""
        params = {
            "include_parents": "true" if include_parents else "false",
            "as_of": format_point(as_of) if as_of is not None else None,
            "min_offset": min_offset,
        }
        resp = self._request("GET", self._path(memory_id) + "/history", params=params)
        return _versions.decode(self._ok(resp).content)

    def audit(
        self,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
        actor: str | None = None,
        type: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int | None = None,
        as_of: datetime | int | None = None,
        limit: int = 100,
        min_offset: int | None = None,
    ) -> AuditPage:
        """Audit entries in log order; pass ``page.next_after`` as ``after`` for the next page."""
        params = {
            "namespace": namespace,
            "memory_id": memory_id,
            "actor": actor,
            "type": type,
            "status": status,
            "since": format_point(since) if since is not None else None,
            "until": format_point(until) if until is not None else None,
            "after": after,
            "as_of": format_point(as_of) if as_of is not None else None,
            "limit": limit,
            "min_offset": min_offset,
        }
        resp = self._request("GET", "/v1/audit", params=params)
        return _audit_page.decode(self._ok(resp).content)

    def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        namespaces: str | Sequence[str] | None = None,
        k: int = 10,
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        include_archived: bool = False,
        as_of: datetime | int | None = None,
        exact: bool = False,
        alpha: float | None = None,
        min_offset: int | None = None,
    ) -> list[SearchHit]:
        """``POST /v1/search``: the same parameters and hits as :meth:`MemoryStore.search`."""
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        body: dict[str, Any] = {
            "query": query, "vector": list(vector) if vector is not None else None,
            "namespaces": list(namespaces) if namespaces is not None else None, "k": k,
            "tags_any": list(tags_any) if tags_any else None,
            "tags_all": list(tags_all) if tags_all else None,
            "states": list(states) if states is not None else None,
            "kinds": list(kinds) if kinds is not None else None, "metadata": metadata,
            "include_archived": include_archived, "exact": exact, "alpha": alpha,
            "min_offset": min_offset,
            "as_of": format_point(as_of) if as_of is not None else None,
        }  # fmt: skip
        for name, when in (
            ("created_after", created_after), ("created_before", created_before),
            ("updated_after", updated_after), ("updated_before", updated_before),
        ):  # fmt: skip
            body[name] = format_point(when) if when is not None else None
        if isinstance(as_of, int):
            body["as_of"] = as_of
        payload = msgspec.json.encode({n: v for n, v in body.items() if v is not None})
        resp = self._request("POST", "/v1/search", content=payload)
        return _hits.decode(self._ok(resp).content).hits

    def verify(self, progress: Any = None) -> ChainBreak | None:
        """Have the server recompute its log's hash chain; the first break, or None.

        ``progress`` is accepted for signature compatibility with :class:`MemoryStore` and
        not called: the work happens on the server.
        """
        timeout = max(self.timeout, LONG_TIMEOUT)
        body = _body(self._ok(self._request("POST", "/v1/audit/verify", timeout=timeout)))
        if body.get("ok"):
            return None
        return ChainBreak(int(body["offset"]), str(body["reason"]))

    # -- copies --------------------------------------------------------------------------------

    def backup(self, dest: str | Path) -> Path:
        """A consistent copy of the server's log and keys, written by the server.

        ``dest`` is a path on the **server's** filesystem and must be absolute (a relative
        path would land in whatever directory the server was started from).
        """
        content = msgspec.json.encode({"dest": str(dest)})
        timeout = max(self.timeout, LONG_TIMEOUT)
        resp = self._request("POST", "/v1/backup", content=content, timeout=timeout)
        return Path(_body(self._ok(resp))["dest"])

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
        path = Path(_body(self._ok(resp))["into"])
        return MemoryStore.open(
            path, actor=self.actor, registry=self.registry, progress=progress, semantic=semantic
        )
