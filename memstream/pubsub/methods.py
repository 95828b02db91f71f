"""The pub/sub methods of the SDK: subscriptions, their deliveries, and publications.

:class:`PubSub` declares them once; the embedded store runs them on its service
(:class:`EmbeddedPubSub`), the HTTP client sends them to ``/v1/subscriptions`` and
``/v1/publications`` (:mod:`memstream.client.pubsub`). Every one is checked by the
service: a principal creates, reads and consumes its own subscriptions (another's takes
admin); publishing takes admin on the namespace published; a publication is seen by those
it is published to and by the admins of its namespace.

A subscription is durable: its filter, limits and cursor outlive the process that
consumes it. :meth:`PubSub.subscribe` opens a consumer of it (:class:`SubscriberLike`):
each delivery is an event that matched, delivered at least once, in log order, until it
is acknowledged.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from memstream import validation as check
from memstream.errors import BadRequest
from memstream.schemas.events import SubscriptionFilter
from memstream.schemas.views import (
    Delivery,
    Heartbeat,
    ParkedDelivery,
    PublicationView,
    SubscriptionView,
)

if TYPE_CHECKING:
    from memstream.service.pubsub import Subscriber

__all__ = ["FILTER_LISTS", "EmbeddedPubSub", "PubSub", "SubscriberLike", "filter_of"]

#: The filter conditions :meth:`PubSub.create_subscription` takes as keyword lists.
FILTER_LISTS = (
    "namespaces", "types", "outcomes", "memory_ids", "tags_any", "tags_all", "states", "kinds",
    "actors",
)  # fmt: skip
#: The default similarity a semantic condition asks for.
DEFAULT_THRESHOLD = 0.5

#: Where a subscription starts, or where :meth:`PubSub.seek` moves it: ``"now"``,
#: ``"beginning"``, a log offset, or a time (an aware datetime, or RFC 3339 text).
Start = str | int | datetime


class SubscriberLike(Protocol):
    """What :meth:`PubSub.subscribe` returns, on every face: the deliveries of one
    subscription, and their acknowledgements.

    Iterate it (``for d in sub``, or ``async for d in sub``): each item is a
    :class:`~memstream.schemas.views.Delivery`, or a
    :class:`~memstream.schemas.views.Heartbeat` when nothing came for ``heartbeat``
    seconds; the iteration ends when the subscription is deleted or the store closes
    (:meth:`next` raises :class:`~memstream.errors.SubscriptionClosed` then).
    """

    def next(self, timeout: float | None = None) -> Delivery | Heartbeat:
        """The next delivery, or a heartbeat after ``timeout`` seconds with none."""
        ...

    async def next_async(self, timeout: float | None = None) -> Delivery | Heartbeat:
        """:meth:`next` for coroutines."""
        ...

    def __iter__(self) -> Iterator[Delivery | Heartbeat]: ...

    def __aiter__(self) -> AsyncIterator[Delivery | Heartbeat]: ...

    def ack(self, *positions: int) -> int:
        """Acknowledge deliveries by position; how many were in flight."""
        ...

    def ack_upto(self, position: int) -> int:
        """Acknowledge every delivery in flight at or below ``position``."""
        ...

    def nack(self, position: int, *, reason: str | None = None, park: bool = True) -> bool:
        """Reject a delivery: parked with ``reason``, or (``park=False``) delivered again."""
        ...

    def close(self) -> None:
        """Stop receiving; what is in flight is delivered again after its timeout."""
        ...


class PubSub(abc.ABC):
    """Subscriptions and publications (see the module docstring)."""

    # -- subscriptions -----------------------------------------------------------------------

    @abc.abstractmethod
    def create_subscription(
        self,
        name: str,
        *,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        outcomes: Sequence[str] | None = None,
        memory_ids: Sequence[str] | None = None,
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        actors: Sequence[str] | None = None,
        query: str | None = None,
        vector: Sequence[float] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        filter: SubscriptionFilter | dict[str, Any] | None = None,
        start: Start = "now",
        view: bool = False,
        max_in_flight: int = 1_000,
        ack_timeout: float = 30.0,
        publication: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> SubscriptionView:
        """Create subscription ``name``, or change the one of that name (its filter,
        limits and description change; its cursor stays where it is).

        What it receives: every condition given must hold.

        - ``namespaces``: ``user/alice`` (exact), ``team/*`` (team and below), ``*``;
        - ``types``: event types (``create``, ``revise``, ``archive``, ``erase``, ...);
        - ``outcomes``: ``accepted`` (the default) and/or ``rejected``;
        - ``memory_ids``; ``tags_any`` / ``tags_all``; ``states``; ``kinds`` (the memory as
          the event left it); ``actors`` (who wrote the event);
        - ``query`` (a text) or ``vector``, with ``threshold``: memories whose text means
          something close to it (cosine similarity; the store must keep its search
          indexes). The query is embedded once, here.

        Or pass the whole filter as ``filter=`` (a
        :class:`~memstream.schemas.events.SubscriptionFilter` or a dict of its fields), not
        both. An erase always reaches the subscribers of its memory (as a tombstone).

        ``start`` (a new subscription): ``"now"`` (what is written from now on),
        ``"beginning"``, an offset, or a time. ``view``: each delivery carries the memory's
        current view. At most ``max_in_flight`` deliveries wait for their acknowledgement;
        one not acknowledged within ``ack_timeout`` seconds is delivered again.
        ``publication``: subscribe to a publication (its terms apply) instead of the
        store's namespaces. ``owner``: the principal it delivers as, receiving only what
        that principal may read (default: the caller; another owner takes admin)."""

    @abc.abstractmethod
    def subscriptions(self) -> list[SubscriptionView]:
        """The subscriptions the caller owns (every one, for an admin), by name."""

    @abc.abstractmethod
    def get_subscription(self, name: str) -> SubscriptionView:
        """Subscription ``name`` as it stands, with its cursor and parked count; raises
        :class:`~memstream.errors.UnknownSubscription` if there is none."""

    @abc.abstractmethod
    def delete_subscription(self, name: str, *, reason: str | None = None) -> None:
        """Delete subscription ``name``: its consumers end (``SubscriptionClosed``), its
        cursor and parked deliveries go. The deletion is an audited event."""

    @abc.abstractmethod
    def subscribe(
        self, name: str, *, heartbeat: float = 15.0, last_seen: int | None = None
    ) -> SubscriberLike:
        """Consume subscription ``name``: a :class:`SubscriberLike` delivering each match
        at least once, in log order, from the subscription's cursor. A heartbeat comes
        after ``heartbeat`` seconds with nothing to deliver. Every consumer of one
        subscription shares its cursor: two of them split the deliveries. ``last_seen``:
        the position this consumer saw last before reconnecting; deliveries in flight
        beyond it come again at once."""

    @abc.abstractmethod
    def seek(self, name: str, start: Start) -> SubscriptionView:
        """Move subscription ``name``'s cursor: to ``"now"``, ``"beginning"``, an offset
        (delivered next) or a time. What was in flight is dropped, and every match from
        there on is delivered, again if it was before."""

    @abc.abstractmethod
    def parked(self, name: str, *, limit: int = 1_000) -> list[ParkedDelivery]:
        """The deliveries of ``name`` its consumers rejected (``nack``), oldest first."""

    @abc.abstractmethod
    def unpark(self, name: str, positions: Sequence[int]) -> int:
        """Remove parked deliveries of ``name`` (handled by hand); how many were removed."""

    # -- publications ------------------------------------------------------------------------

    @abc.abstractmethod
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
        """Publish the memories of ``namespace`` (all, those tagged ``tag``, or the one
        ``memory_id``) as publication ``name`` to ``to`` (principals, ``group:<name>``,
        ``*``), under terms: nothing is delivered after ``expires_at``; at most
        ``max_deliveries`` per ``period_seconds`` to each subscriber; ``redact`` replaces
        sensitive values in what goes out. Publishing again under the same name revises
        the terms. Takes admin on the namespace. A principal in ``to`` subscribes with
        ``create_subscription(..., publication=name)``, no read grant needed."""

    @abc.abstractmethod
    def withdraw(self, name: str, *, reason: str | None = None) -> None:
        """Withdraw publication ``name``: nothing more of it is delivered, and its
        subscribers receive the withdrawal."""

    @abc.abstractmethod
    def publications(self) -> list[PublicationView]:
        """The publications the caller may see (those published to it, those of the
        namespaces it administers), by name."""

    @abc.abstractmethod
    def get_publication(self, name: str) -> PublicationView:
        """Publication ``name`` and its terms; raises
        :class:`~memstream.errors.UnknownSubscription` if there is none."""


def filter_of(
    filter: Any,
    conditions: dict[str, Any],
    query: Any = None,
    vector: Any = None,
    threshold: Any = DEFAULT_THRESHOLD,
) -> Any:
    """The filter :meth:`PubSub.create_subscription` sends: ``filter`` as given, or a dict
    of the keyword conditions that were given (``conditions``: the lists by name). Each
    face calls this; the service validates the result."""
    lists = {k: v for k, v in conditions.items() if v is not None}
    semantic = query is not None or vector is not None
    if threshold != DEFAULT_THRESHOLD and not semantic:
        raise BadRequest(
            "threshold applies to a semantic condition: give query= (a text) or vector= too",
            field="threshold",
        )
    if filter is not None:
        given = sorted(lists) + ["query"] * (query is not None) + ["vector"] * (vector is not None)
        if given:
            raise BadRequest(
                f"filter was given together with {', '.join(given)}: pass the conditions "
                "either as keywords or as filter=, not both",
                field="filter",
            )
        return filter
    out: dict[str, Any] = {k: check.strings(v, k) for k, v in lists.items()}
    if semantic:
        if query is not None and vector is not None:
            raise BadRequest(
                "a semantic condition takes query (a text) or vector, not both", field="vector"
            )
        cond: dict[str, Any] = {
            "threshold": check.number(
                threshold, "threshold", optional=False, minimum=-1.0, maximum=1.0
            )
        }
        if query is not None:
            cond["query"] = check.text(query, "query", optional=False)
        else:
            cond["vector"] = check.vector(vector, "vector")
        out["semantic"] = cond
    return out


class EmbeddedPubSub(PubSub):
    """:class:`PubSub` on the store's own service, as its caller."""

    service: Any
    caller: Any

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
        return self.service.set_subscription(
            self.caller, name, filter=filter_of(filter, conditions, query, vector, threshold),
            start=start, view=view, max_in_flight=max_in_flight, ack_timeout=ack_timeout,
            publication=publication, description=description, owner=owner,
        )  # fmt: skip

    def subscriptions(self):
        return self.service.subscriptions(self.caller)

    def get_subscription(self, name):
        return self.service.subscription(self.caller, name)

    def delete_subscription(self, name, *, reason=None):
        self.service.delete_subscription(self.caller, name, reason=reason)

    def subscribe(self, name, *, heartbeat=15.0, last_seen=None) -> Subscriber:
        return self.service.consume(self.caller, name, heartbeat=heartbeat, last_seen=last_seen)

    def seek(self, name, start):
        return self.service.seek(self.caller, name, start)

    def parked(self, name, *, limit=1_000):
        return self.service.parked(self.caller, name, limit=limit)

    def unpark(self, name, positions):
        return self.service.unpark(self.caller, name, _listed(positions))

    def publish(
        self, name, namespace, to, *, tag=None, memory_id=None, expires_at=None,
        max_deliveries=None, period_seconds=86_400, redact=False, description=None,
    ):  # fmt: skip
        return self.service.publish(
            self.caller, name, namespace, to, tag=tag, memory_id=memory_id,
            expires_at=expires_at, max_deliveries=max_deliveries,
            period_seconds=period_seconds, redact=redact, description=description,
        )  # fmt: skip

    def withdraw(self, name, *, reason=None):
        self.service.withdraw(self.caller, name, reason=reason)

    def publications(self):
        return self.service.publications(self.caller)

    def get_publication(self, name):
        return self.service.publication(self.caller, name)


def _listed(positions: Any) -> Any:
    """A tuple of positions as a list; anything else as given (the service checks it)."""
    return list(positions) if isinstance(positions, tuple) else positions
