"""Pub/sub over HTTP: subscriptions, publications, and a subscriber over Server-Sent Events.

:class:`HttpPubSub` is the pub/sub half of :class:`~memstream.client.HttpMemoryStore`: the
methods of the embedded store, sent to ``/v1/subscriptions`` and ``/v1/publications``.
:meth:`HttpPubSub.subscribe` returns an :class:`HttpSubscriber`, the same interface as the
embedded :class:`~memstream.service.pubsub.Subscriber`, reading the subscription's event
stream (``GET /v1/subscriptions/{name}/events``) with httpx-sse:

- sync (``next``, ``for d in sub``) or async (``await next_async``, ``async for``): one
  implementation, a coroutine that reads the stream into a bounded queue; used from sync
  code it runs on an event loop of its own, in a thread;
- a dropped connection (the server restarting, a proxy cutting it) is resumed by itself
  with ``Last-Event-ID`` (the highest position received), a bounded number of times with
  backoff, then :class:`~memstream.client.ServerUnavailable`;
- the stream's ``closed`` event raises :class:`~memstream.errors.SubscriptionClosed` (and
  ends an iteration), its ``error`` event the error it carries (``TermsViolated``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
from httpx_sse import SSEError, aconnect_sse

from memstream import validation as check
from memstream.errors import BadRequest, SubscriptionClosed
from memstream.pubsub.methods import DEFAULT_THRESHOLD, PubSub, filter_of
from memstream.schemas.events import SubscriptionFilter
from memstream.schemas.views import (
    Delivery,
    Heartbeat,
    ParkedDelivery,
    PublicationView,
    SubscriptionView,
)
from memstream.wire import PRINCIPAL_HEADER

from .transport import ServerUnavailable, body_of, error_from, error_of

__all__ = ["HttpPubSub", "HttpSubscriber"]

_encode = msgspec.json.Encoder().encode
_subscription = msgspec.json.Decoder(SubscriptionView)
_publication = msgspec.json.Decoder(PublicationView)
_delivery = msgspec.json.Decoder(Delivery)
_heartbeat = msgspec.json.Decoder(Heartbeat)


class _Subscriptions(msgspec.Struct):
    subscriptions: list[SubscriptionView]


class _Publications(msgspec.Struct):
    publications: list[PublicationView]


class _Parked(msgspec.Struct):
    parked: list[ParkedDelivery]


_subscriptions = msgspec.json.Decoder(_Subscriptions)
_publications = msgspec.json.Decoder(_Publications)
_parked = msgspec.json.Decoder(_Parked)

#: Seconds a heartbeat made by the client waits for the subscription's state.
STATE_TIMEOUT = 2.0


def _wire_filter(filter: Any) -> dict[str, Any] | None:
    """The filter :func:`filter_of` gave, as the request body carries it."""
    if filter is None or isinstance(filter, dict):
        return filter
    if isinstance(filter, SubscriptionFilter):
        return msgspec.to_builtins(filter)
    raise BadRequest(
        f"filter must be a SubscriptionFilter or a dict, not {type(filter).__name__}",
        field="filter",
    )


def _start(value: Any) -> int | str:
    """A start point as the API takes it: ``now``, ``beginning``, an offset or a time."""
    if value is None:
        return "now"
    if value in ("now", "beginning"):
        return value
    p = check.point(value, "start")
    assert p is not None  # None is "now", above
    return p.isoformat() if isinstance(p, datetime) else p


def _name(name: Any) -> str:
    return quote(check.text(name, "name", optional=False), safe="")


def subscription_path(name: str) -> str:
    return "/v1/subscriptions/" + _name(name)


class HttpPubSub(PubSub):
    """:class:`~memstream.pubsub.methods.PubSub` over the HTTP API: the embedded store's
    methods, with the same arguments, answers and errors, sent to ``/v1/subscriptions``
    and ``/v1/publications``."""

    _request: Any
    _ok: Any
    url: str
    actor: str
    timeout: float
    _http: httpx.Client

    # -- subscriptions -------------------------------------------------------------------------

    def create_subscription(
        self, name, *, namespaces=None, types=None, outcomes=None, memory_ids=None,
        tags_any=None, tags_all=None, states=None, kinds=None, actors=None, query=None,
        vector=None, threshold=DEFAULT_THRESHOLD, filter=None, start="now", view=False,
        max_in_flight=1_000, ack_timeout=30.0, publication=None, description=None, owner=None,
    ):  # fmt: skip
        conditions = {
            "namespaces": namespaces, "types": types, "outcomes": outcomes,
            "memory_ids": memory_ids, "tags_any": tags_any, "tags_all": tags_all,
            "states": states, "kinds": kinds, "actors": actors,
        }  # fmt: skip
        f = _wire_filter(filter_of(filter, conditions, query, vector, threshold))
        body = {
            "filter": f, "start": _start(start), "view": check.boolean(view, "view"),
            "max_in_flight": max_in_flight, "ack_timeout": ack_timeout,
            "publication": publication, "description": description, "owner": owner,
        }  # fmt: skip
        content = _encode({k: v for k, v in body.items() if v is not None})
        resp = self._ok(self._request("PUT", subscription_path(name), content=content))
        return _subscription.decode(resp.content)

    def subscriptions(self) -> list[SubscriptionView]:
        """The subscriptions the caller owns (every one, for an admin)."""
        resp = self._ok(self._request("GET", "/v1/subscriptions"))
        return _subscriptions.decode(resp.content).subscriptions

    def get_subscription(self, name: str) -> SubscriptionView:
        """Subscription ``name``, with its cursor and what is in flight on the server."""
        resp = self._ok(self._request("GET", subscription_path(name)))
        return _subscription.decode(resp.content)

    def delete_subscription(self, name: str, *, reason: str | None = None) -> None:
        """Delete subscription ``name``: its consumers end, its cursor goes."""
        params = {"reason": check.text(reason, "reason")}
        self._ok(self._request("DELETE", subscription_path(name), params=params))

    def seek(self, name: str, start: Any) -> SubscriptionView:
        """Move subscription ``name``'s cursor (``now``, ``beginning``, an offset, a time)."""
        content = _encode({"start": _start(start)})
        resp = self._ok(self._request("POST", subscription_path(name) + "/seek", content=content))
        return _subscription.decode(resp.content)

    def parked(self, name: str, *, limit: int = 1_000) -> list[ParkedDelivery]:
        """The deliveries of ``name`` its consumers parked, oldest first."""
        limit = check.integer(limit, "limit", optional=False, minimum=1, maximum=100_000)
        resp = self._request("GET", subscription_path(name) + "/parked", params={"limit": limit})
        return _parked.decode(self._ok(resp).content).parked

    def unpark(self, name: str, positions: Sequence[int]) -> int:
        """Remove parked deliveries (handled by hand); how many were removed."""
        content = _encode({"positions": _positions(positions)})
        resp = self._request("POST", subscription_path(name) + "/unpark", content=content)
        return int(self._ok(resp).json()["unparked"])

    def subscribe(
        self, name: str, *, heartbeat: float = 15.0, last_seen: int | None = None
    ) -> HttpSubscriber:
        """A subscriber of ``name`` (see :class:`HttpSubscriber`). The subscription is
        looked up now: an unknown one raises :class:`UnknownSubscription`, another's
        :class:`Forbidden`; the stream opens at the first ``next``."""
        heartbeat = check.number(
            heartbeat, "heartbeat", optional=False, minimum=0.01, maximum=3600.0
        )
        last_seen = check.integer(last_seen, "last_seen", minimum=-1)
        self.get_subscription(name)
        return HttpSubscriber(self, name, heartbeat=heartbeat, last_seen=last_seen)

    # -- publications --------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        namespace: str,
        to: Sequence[str],
        *,
        tag: str | None = None,
        memory_id: str | None = None,
        expires_at: datetime | str | None = None,
        max_deliveries: int | None = None,
        period_seconds: int = 86_400,
        redact: bool = False,
        description: str | None = None,
    ) -> PublicationView:
        """Publish the memories of ``namespace`` to ``to`` under terms (again: revise)."""
        until = check.time(expires_at, "expires_at")
        body = {
            "namespace": namespace, "to": check.strings(to, "to"), "tag": tag,
            "memory_id": memory_id, "expires_at": until.isoformat() if until else None,
            "max_deliveries": max_deliveries, "period_seconds": period_seconds,
            "redact": redact, "description": description,
        }  # fmt: skip
        content = _encode({k: v for k, v in body.items() if v is not None})
        resp = self._request("PUT", "/v1/publications/" + _name(name), content=content)
        return _publication.decode(self._ok(resp).content)

    def withdraw(self, name: str, *, reason: str | None = None) -> None:
        """Withdraw publication ``name``: nothing more of it is delivered."""
        content = _encode({"reason": check.text(reason, "reason")})
        self._ok(self._request("POST", f"/v1/publications/{_name(name)}/withdraw", content=content))

    def publications(self) -> list[PublicationView]:
        """The publications the caller may subscribe to, and those it administers."""
        resp = self._ok(self._request("GET", "/v1/publications"))
        return _publications.decode(resp.content).publications

    def get_publication(self, name: str) -> PublicationView:
        """Publication ``name`` and its terms."""
        resp = self._ok(self._request("GET", "/v1/publications/" + _name(name)))
        return _publication.decode(resp.content)


def _positions(positions: Any) -> list[int]:
    if isinstance(positions, int | str) or not hasattr(positions, "__iter__"):
        raise BadRequest(
            f"positions must be a list of delivery positions, not {type(positions).__name__}",
            field="positions",
        )
    return [check.integer(p, "positions", optional=False) for p in positions]


class _Portal:
    """An event loop in a thread of its own: the sync side of :class:`HttpSubscriber`."""

    def __init__(self) -> None:
        from anyio.from_thread import start_blocking_portal

        self._stack = contextlib.ExitStack()
        self.portal = self._stack.enter_context(start_blocking_portal())

    def call(self, fn: Any, *args: Any) -> Any:
        """``await fn(*args)`` in the portal's loop; interrupted (Ctrl-C), it is cancelled
        there too (a ``next`` left waiting would take the next delivery for nobody)."""
        future = self.portal.start_task_soon(fn, *args)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        self._stack.close()


class HttpSubscriber:
    """Deliveries of one subscription over HTTP: the interface of the embedded
    :class:`~memstream.service.pubsub.Subscriber` (``next``, ``next_async``, iteration,
    ``ack``, ``ack_upto``, ``nack``, ``close``), plus awaitable acknowledgements
    (``ack_async``, ``ack_upto_async``, ``nack_async``, ``aclose``).

    Use it from sync code or from one event loop, not both. The server sends a heartbeat
    after ``heartbeat`` seconds with nothing to deliver; ``next(timeout)`` with a shorter
    ``timeout`` answers a heartbeat made from the subscription's state on the server (or,
    while the stream reconnects, from the last heartbeat received).
    """

    #: reconnections tried (with backoff) before giving up with ServerUnavailable
    retries = 8
    #: seconds before the first reconnection; doubled each time, at most 5 s
    backoff = 0.25
    #: deliveries and heartbeats read ahead of the consumer
    read_ahead = 256

    def __init__(
        self,
        store: HttpPubSub,
        name: str,
        *,
        heartbeat: float = 15.0,
        last_seen: int | None = None,
        retries: int | None = None,
        backoff: float | None = None,
    ):
        self.store = store
        self.name = name
        self.heartbeat = heartbeat
        #: the highest position received (sent as Last-Event-ID when reconnecting)
        self.last_seen = last_seen
        if retries is not None:
            self.retries = retries
        if backoff is not None:
            self.backoff = backoff
        self.path = subscription_path(name)
        #: how many times the stream was opened (1: never reconnected)
        self.connections = 0
        self._last_heartbeat: Heartbeat | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._portal: _Portal | None = None
        self._closed = False
        self._received = False

    def __repr__(self) -> str:
        return f"HttpSubscriber({self.name!r}, url={self.store.url!r})"

    # -- receiving ----------------------------------------------------------------------------

    def next(self, timeout: float | None = None) -> Delivery | Heartbeat:
        """The next delivery, or a heartbeat (the server's after ``heartbeat`` seconds with
        nothing to deliver; one made here after ``timeout`` seconds)."""
        if self._closed:
            raise SubscriptionClosed(f"subscriber of {self.name} was closed")
        if self._portal is None:
            if self._loop is not None:
                raise RuntimeError(
                    "this subscriber is used from an event loop: call `await next_async()`"
                )
            self._portal = _Portal()
        return self._portal.call(self._next, timeout)

    async def next_async(self, timeout: float | None = None) -> Delivery | Heartbeat:
        """:meth:`next` for coroutines."""
        if self._closed:
            raise SubscriptionClosed(f"subscriber of {self.name} was closed")
        if self._portal is not None:
            raise RuntimeError("this subscriber is used from sync code: call next()")
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("this subscriber is used from another event loop")
        return await self._next(timeout)

    def __iter__(self) -> Iterator[Delivery | Heartbeat]:
        while True:
            try:
                yield self.next()
            except SubscriptionClosed:
                return

    async def __aiter__(self) -> AsyncIterator[Delivery | Heartbeat]:
        while True:
            try:
                yield await self.next_async()
            except SubscriptionClosed:
                return

    async def _next(self, timeout: float | None) -> Delivery | Heartbeat:
        queue = self._start()
        try:
            item = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return await self._state()
        if isinstance(item, BaseException):
            queue.put_nowait(item)  # the stream is over: every later call raises it too
            raise item.with_traceback(None)
        return item

    def _start(self) -> asyncio.Queue[Any]:
        """The queue the reader fills (the reader started in this loop at the first call)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.read_ahead)
            self._task = asyncio.create_task(self._read(self._queue, self._http()))
        return self._queue

    def _http(self) -> httpx.AsyncClient:
        """The connections of this subscriber, in the running loop (made at the first use)."""
        if self._client is None:
            self._loop = asyncio.get_running_loop()
            store = self.store
            headers = {**store._http.headers, PRINCIPAL_HEADER: store.actor}
            # a read waits for the next heartbeat at most; beyond, the connection is dead
            read = self.heartbeat * 2 + 10.0
            self._client = httpx.AsyncClient(
                base_url=store.url, headers=headers,
                timeout=httpx.Timeout(store.timeout, connect=min(store.timeout, 5.0), read=read),
            )  # fmt: skip
        return self._client

    async def _read(self, queue: asyncio.Queue[Any], client: httpx.AsyncClient) -> None:
        """Read the stream into ``queue``, reconnecting; it ends with an exception put."""
        failures = 0
        try:
            while True:
                self._received = False
                cause = "the server ended the stream"
                try:
                    if await self._connection(queue, client):
                        return
                except _Transient as e:
                    cause = str(e)
                except (httpx.TransportError, SSEError) as e:
                    cause = f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
                # a connection that delivered something was good: count afresh
                failures = 1 if self._received else failures + 1
                if failures > self.retries:
                    await queue.put(
                        ServerUnavailable(
                            f"lost the event stream of subscription {self.name} from the "
                            f"memstream server at {self.store.url} ({cause}), and "
                            f"{self.retries} reconnections failed; check that the server runs, "
                            "then subscribe again (nothing acknowledged is lost)"
                        )
                    )
                    return
                await asyncio.sleep(min(self.backoff * 2 ** (failures - 1), 5.0))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must not leave next() waiting forever
            await queue.put(e)

    async def _connection(self, queue: asyncio.Queue[Any], client: httpx.AsyncClient) -> bool:
        """One connection, read to its end: True when the stream is over for good (the
        subscription closed, an error answered), False when it should be opened again."""
        headers = {} if self.last_seen is None else {"Last-Event-ID": str(self.last_seen)}
        params = {"heartbeat": self.heartbeat}
        url = self.path + "/events"
        async with aconnect_sse(client, "GET", url, params=params, headers=headers) as src:
            resp = src.response
            if resp.status_code >= 400:
                await resp.aread()
                if resp.status_code in (502, 503, 504):
                    raise _Transient(f"HTTP {resp.status_code}: {body_of(resp).get('message')}")
                await queue.put(error_of(resp))
                return True
            self.connections += 1
            async for sse in src.aiter_sse():
                if sse.event == "delivery":
                    d = _delivery.decode(sse.data)
                    if self.last_seen is None or d.position > self.last_seen:
                        self.last_seen = d.position
                    self._received = True
                    await queue.put(d)
                elif sse.event == "heartbeat":
                    hb = _heartbeat.decode(sse.data)
                    self._last_heartbeat = hb
                    self._received = True
                    await queue.put(hb)
                elif sse.event in ("closed", "error"):
                    body = msgspec.json.decode(sse.data)
                    status = int(body.get("status") or (410 if sse.event == "closed" else 500))
                    await queue.put(error_from(status, body))
                    return True
        return False

    async def _state(self) -> Heartbeat:
        """A heartbeat made here (``next``'s timeout ran out before the server's): the
        subscription's state on the server (two requests at once, answered within a
        couple of seconds), or the last heartbeat received while it cannot answer."""
        assert self._client is not None
        client, last, now = self._client, self._last_heartbeat, datetime.now(UTC)
        try:
            got, ready = await asyncio.gather(
                client.get(self.path, timeout=STATE_TIMEOUT),
                client.get("/ready", timeout=STATE_TIMEOUT),
            )
            view = _subscription.decode(got.content) if got.status_code == 200 else None
            head = body_of(ready).get("head")
        except (httpx.HTTPError, msgspec.DecodeError):
            view, head = None, None
        if view is None:
            if last is not None:
                return msgspec.structs.replace(last, at=now)
            position = -1 if self.last_seen is None else self.last_seen
            return Heartbeat(
                subscription=self.name, position=position, cursor=-1, head=position,
                in_flight=0, at=now,
            )  # fmt: skip
        stats = view.stats or {}
        cursor = -1 if view.cursor is None else view.cursor
        return Heartbeat(
            subscription=self.name, position=int(stats.get("scanned", cursor)), cursor=cursor,
            head=int(head) if isinstance(head, int) else (last.head if last else cursor),
            in_flight=int(stats.get("in_flight", 0)), at=now,
        )  # fmt: skip

    # -- acknowledging ------------------------------------------------------------------------

    def ack(self, *positions: int) -> int:
        """Acknowledge deliveries by position; how many were in flight."""
        return self._answer("ack", {"positions": _positions(positions)}, "acked")

    def ack_upto(self, position: int) -> int:
        """Acknowledge every delivery in flight at or below ``position``."""
        upto = check.integer(position, "position", optional=False, minimum=-1)
        return self._answer("ack", {"upto": upto}, "acked")

    def nack(self, position: int, *, reason: str | None = None, park: bool = True) -> bool:
        """Reject a delivery: parked with ``reason`` (default), or delivered again now."""
        return bool(self._answer("nack", _nack(position, reason, park), "nacked"))

    async def ack_async(self, *positions: int) -> int:
        """:meth:`ack` for coroutines."""
        return await self._answer_async("ack", {"positions": _positions(positions)}, "acked")

    async def ack_upto_async(self, position: int) -> int:
        """:meth:`ack_upto` for coroutines."""
        upto = check.integer(position, "position", optional=False, minimum=-1)
        return await self._answer_async("ack", {"upto": upto}, "acked")

    async def nack_async(
        self, position: int, *, reason: str | None = None, park: bool = True
    ) -> bool:
        """:meth:`nack` for coroutines."""
        return bool(await self._answer_async("nack", _nack(position, reason, park), "nacked"))

    def _answer(self, action: str, body: dict[str, Any], key: str) -> Any:
        resp = self.store._request("POST", f"{self.path}/{action}", content=_encode(body))
        return self.store._ok(resp).json()[key]

    async def _answer_async(self, action: str, body: dict[str, Any], key: str) -> Any:
        try:
            resp = await self._http().post(
                f"{self.path}/{action}", content=_encode(body),
                headers={"content-type": "application/json"},
            )  # fmt: skip
        except httpx.TransportError as e:
            raise ServerUnavailable(
                f"cannot reach the memstream server at {self.store.url} ({e.__class__.__name__}"
                f": {e}); the delivery is delivered again after its ack_timeout"
            ) from None
        if resp.status_code >= 400:
            raise error_of(resp)
        return resp.json()[key]

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving: the stream's connection is closed (what is in flight stays in
        flight: delivered again after its ack_timeout, to the next consumer)."""
        if self._closed:
            return
        self._closed = True
        if self._portal is not None:
            portal, self._portal = self._portal, None
            with contextlib.suppress(Exception):
                portal.call(self._stop)
            portal.close()
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self._stop())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stop(), loop)

    async def aclose(self) -> None:
        """:meth:`close` for coroutines (waits for the connection to close)."""
        self._closed = True
        await self._stop()

    async def _stop(self) -> None:
        task, client = self._task, self._client
        self._task = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if client is not None:
            await client.aclose()

    def __enter__(self) -> HttpSubscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> HttpSubscriber:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _nack(position: Any, reason: Any, park: Any) -> dict[str, Any]:
    return {
        "position": check.integer(position, "position", optional=False),
        "reason": check.text(reason, "reason"),
        "park": check.boolean(park, "park"),
    }


class _Transient(Exception):
    """The server answered the stream with a 502/503/504: try again."""
