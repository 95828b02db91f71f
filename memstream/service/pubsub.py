"""Pub/sub in the service: subscriptions, publications, and every delivery checked once.

:class:`PubSubMethods` is part of :class:`~memstream.service.MemoryService`. Subscriptions
and publications are governance events (appended through the service, so authorized and
audited like any other); consuming one goes through :class:`Subscriber`, which checks each
delivery *when it is made*:

- a subscription delivers as its owner: only what the owner may read at that moment (a
  grant revoked meanwhile stops the deliveries it allowed; they are resolved, never sent);
- a subscription to a publication delivers what the publication selects, while its terms
  hold (not expired, not withdrawn, the owner among those it is published to, deliveries
  per period not used up), with provenance, and redacted if the terms say so;
- an event of a memory erased since, and an erase, go out as tombstones: the envelope (who,
  when, which memory) and the payload's clear fields, never the content;
- the sealed original of a redacted memory is never delivered;
- every delivery is recorded in the access log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from memstream import validation as check
from memstream.errors import (
    BadRequest,
    Forbidden,
    SubscriptionClosed,
    TermsViolated,
    UnknownSubscription,
    Unsupported,
)
from memstream.projections.policy import PolicyState
from memstream.projections.subscriptions import PublicationRule, SubscriptionRule
from memstream.pubsub.consumer import Consumer, ConsumerClosed, Item
from memstream.pubsub.cursors import Parked
from memstream.pubsub.hub import SubscriptionHub
from memstream.pubsub.positions import decode, encode
from memstream.pubsub.ready import ReadySet
from memstream.schemas.events import (
    GOVERNANCE_NAMESPACE,
    GOVERNANCE_TYPES,
    PUBSUB_TYPES,
    Event,
    SubscriptionFilter,
)
from memstream.schemas.views import (
    Delivery,
    Heartbeat,
    ParkedDelivery,
    Provenance,
    PublicationView,
    SubscriptionView,
)
from memstream.streams.feed import FeedClosed

from .caller import Caller

if TYPE_CHECKING:
    from .service import MemoryService

__all__ = ["DEFAULT_HEARTBEAT", "PubSubMethods", "Subscriber"]

#: Seconds between heartbeats while nothing is delivered.
DEFAULT_HEARTBEAT = 15.0
#: Seconds a delivery that carries the memory's view waits for the core projection to
#: commit its event (it was matched as soon as it was decided); then the read says why not.
VIEW_WAIT = 30.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: payload fields never delivered (the sealed original of a redacted memory)
_SEALED = ("original",)
#: governance payload fields never delivered (a token's hash)
_SECRET = ("hash",)


def _now() -> datetime:
    return datetime.now(UTC)


def _grantee(to: tuple[str, ...], principal: str, policy: PolicyState) -> bool:
    """Whether ``principal`` is among ``to`` (names, ``group:<g>``, ``*``)."""
    if "*" in to or principal in to:
        return True
    info = policy.principals.get(principal)
    return info is not None and any(f"group:{g}" in to for g in info.groups)


class PubSubMethods:
    """The pub/sub entry points of :class:`~memstream.service.MemoryService`."""

    # -- subscriptions -------------------------------------------------------------------------

    def set_subscription(
        self: MemoryService,
        caller: Caller,
        name: str,
        *,
        filter: SubscriptionFilter | dict[str, Any] | None = None,
        start: Any = "now",
        view: bool = False,
        max_in_flight: int = 1_000,
        ack_timeout: float = 30.0,
        publication: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> SubscriptionView:
        """Create subscription ``name``, or change it (its filter, limits and description;
        its cursor stays). ``filter``: a :class:`SubscriptionFilter` or its fields as a
        dict; a semantic ``query`` text is embedded once, here. ``start`` (for a new one):
        ``"now"``, ``"beginning"``, an offset, or a time. ``owner``: the principal it
        delivers as (default: the caller; another needs admin)."""
        self.authorize(caller, "status")
        name = check.text(name, "name", optional=False)
        f = _filter(filter)
        if f.semantic is not None:
            f = msgspec.structs.replace(f, semantic=self._embedded_query(f))
        start_kind, start_offset, start_time = _start(start)
        owner = check.text(owner, "owner") or caller.principal
        publication = check.text(publication, "publication")
        policy = self.backend.policy()
        if publication is not None:
            self._may_subscribe(self._publication(policy, publication), owner, policy)
        payload = {
            "owner": owner, "filter": msgspec.to_builtins(f), "start": start_kind,
            "start_offset": start_offset, "start_time": start_time,
            "view": check.boolean(view, "view"),
            "max_in_flight": check.integer(
                max_in_flight, "max_in_flight", optional=False, minimum=1, maximum=100_000
            ),
            "ack_timeout": check.number(
                ack_timeout, "ack_timeout", optional=False, minimum=0.001, maximum=86_400
            ),
            "publication": publication, "description": check.text(description, "description"),
        }  # fmt: skip
        self._govern(caller, "subscription", name, payload)
        return self._subscription_view(self._rule(self.backend.policy(), name), None)

    def delete_subscription(
        self: MemoryService, caller: Caller, name: str, *, reason: str | None = None
    ) -> None:
        """Delete subscription ``name``: its consumers end, its cursor and parked list go."""
        self.authorize(caller, "status")
        name = check.text(name, "name", optional=False)
        self._rule(self.backend.policy(), name)
        self._govern(caller, "subscription_delete", name, {"reason": reason})

    def subscriptions(self: MemoryService, caller: Caller) -> list[SubscriptionView]:
        """The subscriptions the caller owns (every one, for an admin or the store owner)."""
        self.authorize(caller, "status")
        policy = self.backend.policy()
        every = not caller.enforced or self.access.allowed(caller, "govern")
        mine = [
            r
            for r in sorted(policy.subscriptions.values(), key=lambda r: r.name)
            if every or r.owner == caller.principal
        ]
        hub = self.backend.hub() if mine else None
        return [self._subscription_view(r, hub) for r in mine]

    def subscription(self: MemoryService, caller: Caller, name: str) -> SubscriptionView:
        """Subscription ``name`` as it stands, with its position in this process."""
        rule = self._owned(caller, name)
        return self._subscription_view(rule, self.backend.hub())

    def consume(
        self: MemoryService,
        caller: Caller,
        name: str,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT,
        last_seen: int | None = None,
        partitions: list[int] | None = None,
    ) -> Subscriber:
        """A handle that delivers subscription ``name``'s events (see :class:`Subscriber`).
        Every handle of one subscription shares its cursor and its deliveries in flight
        (they compete for them). ``last_seen``: the position the consumer saw last (an SSE
        ``Last-Event-ID``): deliveries in flight beyond it are sent again at once.
        ``partitions`` (the Kafka runtime): only these partitions (a worker asking the owner
        of some for them); default: every partition, merged."""
        rule = self._owned(caller, name)
        heartbeat = check.number(
            heartbeat, "heartbeat", optional=False, minimum=0.01, maximum=3600.0
        )
        last_seen = check.integer(last_seen, "last_seen", minimum=-1)
        if partitions is not None:
            partitions = [check.integer(p, "partitions", optional=False, minimum=0)
                          for p in partitions]  # fmt: skip
        pub = None
        if rule.publication is not None:
            policy = self.backend.policy()
            pub = self._publication(policy, rule.publication)
            self._may_subscribe(pub, rule.owner, policy)
        hub = self._hub()
        if getattr(hub, "partitioned", False):
            if pub is not None and pub.max_deliveries is not None:
                raise Unsupported(
                    f"publication {pub.name} limits deliveries per period, which the Kafka "
                    "runtime does not count across partitions; subscribe through an embedded "
                    "store or memstream serve, or publish without max_deliveries"
                )
            return hub.subscriber(self, caller, rule, heartbeat, last_seen, partitions)
        try:
            consumer = hub.consumer(rule)
        except ValueError as e:
            raise BadRequest(str(e), field="filter.semantic") from None
        sub = Subscriber(self, caller, consumer, heartbeat, hub=hub)
        if last_seen is not None:
            sub.resend_after(last_seen)
        return sub

    def seek(self: MemoryService, caller: Caller, name: str, start: Any) -> SubscriptionView:
        """Move subscription ``name``'s cursor: to ``"now"`` (the head), ``"beginning"``, an
        offset (delivered next) or a time. What was in flight is dropped; every match from
        there on is delivered, again if it was before."""
        rule = self._owned(caller, name)
        hub = self._hub()
        if getattr(hub, "partitioned", False):
            hub.seek(caller, rule, start)
            return self._subscription_view(rule, None)
        consumer = hub.consumer(rule)
        kind, offset, at = _start(start)
        if kind == "now":
            after = consumer.feed.decided
        elif kind == "beginning":
            after = -1
        elif kind == "offset":
            assert offset is not None
            after = offset - 1
        else:
            assert consumer.before is not None and at is not None
            after = consumer.before(at)
        consumer.seek(after)
        return self._subscription_view(rule, None, consumer)

    def ack(self: MemoryService, caller: Caller, name: str, positions: list[int]) -> int:
        """Acknowledge deliveries of ``name`` by position; how many were in flight."""
        consumer = self._served(caller, name)
        return consumer.ack(_positions(positions, "positions"))

    def ack_upto(self: MemoryService, caller: Caller, name: str, position: int) -> int:
        """Acknowledge every delivery of ``name`` in flight at or below ``position``."""
        consumer = self._served(caller, name)
        position = check.integer(position, "position", optional=False, minimum=-1)
        return consumer.ack_upto(position)

    def nack(
        self: MemoryService,
        caller: Caller,
        name: str,
        position: int,
        *,
        reason: str | None = None,
        park: bool = True,
    ) -> bool:
        """A delivery the consumer cannot handle: parked (kept aside with ``reason``, not
        delivered again), or with ``park=False`` delivered again at once."""
        consumer = self._served(caller, name)
        position = check.integer(position, "position", optional=False, minimum=0)
        return consumer.nack(
            position, reason=check.text(reason, "reason"), park=check.boolean(park, "park")
        )

    def parked(
        self: MemoryService, caller: Caller, name: str, *, limit: int = 1_000
    ) -> list[ParkedDelivery]:
        """The deliveries of ``name`` its consumers parked, oldest first."""
        rule = self._owned(caller, name)
        limit = check.integer(limit, "limit", optional=False, minimum=1, maximum=100_000)
        hub = self._hub()
        if getattr(hub, "partitioned", False):
            return hub.parked(caller, rule, limit)  # type: ignore[no-any-return]
        return parked_views(hub.cursors.parked(name, rule.generation, limit))

    def unpark(self: MemoryService, caller: Caller, name: str, positions: list[int]) -> int:
        """Remove parked deliveries (handled by hand); how many were removed."""
        rule = self._owned(caller, name)
        offsets = _positions(positions, "positions")
        hub = self._hub()
        if getattr(hub, "partitioned", False):
            return hub.unpark(caller, rule, offsets)  # type: ignore[no-any-return]
        return hub.cursors.unpark(name, rule.generation, offsets) if offsets else 0

    def subscription_partitions(
        self: MemoryService, caller: Caller, name: str, body: dict[str, Any]
    ) -> Any:
        """A worker's call to the owner of some partitions of subscription ``name`` (the
        Kafka runtime, memstream/service/merged.py): ``op`` (ack, ack_upto, nack, seek,
        parked, unpark) on ``partitions``, served here."""
        rule = self._owned(caller, name)
        hub = self._hub()
        if not getattr(hub, "partitioned", False):
            raise Unsupported("only a Kafka worker serves a subscription's partitions")
        op = check.text(body.get("op"), "op", optional=False)
        parts = body.get("partitions")
        if not isinstance(parts, list):
            raise BadRequest("partitions must be a list of partition numbers", "partitions")
        args = {k: v for k, v in body.items() if k not in ("op", "partitions")}
        return hub.local_op(rule, op, [check.integer(p, "partitions", optional=False,
                                                     minimum=0) for p in parts], args)  # fmt: skip

    # -- publications --------------------------------------------------------------------------

    def publish(
        self: MemoryService,
        caller: Caller,
        name: str,
        namespace: str,
        to: list[str],
        *,
        tag: str | None = None,
        memory_id: str | None = None,
        expires_at: Any = None,
        max_deliveries: int | None = None,
        period_seconds: int = 86_400,
        redact: bool = False,
        description: str | None = None,
    ) -> PublicationView:
        """Publish the memories of ``namespace`` (those tagged ``tag``, or the one
        ``memory_id``) to ``to`` (principals, ``group:<name>``, ``*``) under terms; publish
        again under the same name to revise the terms (subscribers receive the change).
        Needs admin on the namespace."""
        self.authorize(caller, "status")
        name = check.text(name, "name", optional=False)
        namespace = check.text(namespace, "namespace", optional=False)
        payload = {
            "namespace": namespace, "tag": check.text(tag, "tag"),
            "memory_id": check.text(memory_id, "memory_id"),
            "to": check.strings(to, "to") or [],
            "expires_at": check.time(expires_at, "expires_at"),
            "max_deliveries": check.integer(max_deliveries, "max_deliveries", minimum=1),
            "period_seconds": check.integer(
                period_seconds, "period_seconds", optional=False, minimum=1,
                maximum=10 * 365 * 86_400,
            ),
            "redact": check.boolean(redact, "redact"),
            "description": check.text(description, "description"),
        }  # fmt: skip
        self._govern(caller, "publication", name, payload)
        return _publication_view(self._publication(self.backend.policy(), name))

    def withdraw(
        self: MemoryService, caller: Caller, name: str, *, reason: str | None = None
    ) -> None:
        """Withdraw publication ``name``: nothing more of it is delivered; its subscribers
        receive the withdrawal."""
        self.authorize(caller, "status")
        name = check.text(name, "name", optional=False)
        self._publication(self.backend.policy(), name)
        self._govern(caller, "publication_withdraw", name, {"reason": reason})

    def publications(self: MemoryService, caller: Caller) -> list[PublicationView]:
        """The publications the caller may see: those it may subscribe to, and those of the
        namespaces it administers."""
        self.authorize(caller, "status")
        policy = self.backend.policy()
        return [
            _publication_view(p)
            for p in sorted(policy.publications.values(), key=lambda p: p.name)
            if self._sees_publication(caller, p, policy)
        ]

    def publication(self: MemoryService, caller: Caller, name: str) -> PublicationView:
        """Publication ``name`` and its terms (to those it is published to, and admins of
        its namespace)."""
        self.authorize(caller, "status")
        name = check.text(name, "name", optional=False)
        policy = self.backend.policy()
        pub = self._publication(policy, name)
        if not self._sees_publication(caller, pub, policy):
            self.authorize(caller, "govern", namespace=pub.namespace)
        return _publication_view(pub)

    # -- checks --------------------------------------------------------------------------------

    def _authorize_pubsub(self: MemoryService, caller: Caller, e: Event) -> None:
        """Who may append a pub/sub event: a subscription's owner (a principal sets its own;
        another owner, or another's subscription, needs admin); a publication's namespace's
        admin."""
        policy = self.backend.policy()
        body = e.payload
        if e.type in ("subscription", "subscription_delete"):
            old = policy.subscriptions.get(e.memory_id)
            owners = {getattr(body, "owner", None), old.owner if old else None} - {None}
            if owners <= {caller.principal}:
                return self.authorize(caller, "status")
            return self.authorize(caller, "govern")
        if e.type == "publication":
            namespaces = {getattr(body, "namespace", None)}
        else:
            namespaces = set()
        old_pub = policy.publications.get(e.memory_id)
        if old_pub is not None:
            namespaces.add(old_pub.namespace)
        for ns in sorted(n for n in namespaces if n):
            self._check_admin_over(caller, ns, ns)

    def _owned(self: MemoryService, caller: Caller, name: str) -> SubscriptionRule:
        """Subscription ``name``, once the caller may see it (its owner, or an admin)."""
        self.authorize(caller, "status")
        name = check.text(name, "name", optional=False)
        rule = self._rule(self.backend.policy(), name)
        self._check_owner(caller, rule)
        return rule

    def _check_owner(self: MemoryService, caller: Caller, rule: SubscriptionRule) -> None:
        if caller.enforced and rule.owner != caller.principal:
            try:
                self.authorize(caller, "govern")
            except Forbidden:
                raise Forbidden(
                    f"subscription {rule.name} belongs to {rule.owner}: only its owner (or an "
                    "admin) may read or consume it",
                    missing=f"admin on * (or be {rule.owner})",
                ) from None

    def _rule(self: MemoryService, policy: PolicyState, name: str) -> SubscriptionRule:
        rule = policy.subscriptions.get(name)
        if rule is None:
            raise UnknownSubscription(
                f"subscription {name} does not exist; create it with `memstream subscription "
                "create` or POST /v1/subscriptions",
                name=name,
            )
        return rule

    def _publication(self: MemoryService, policy: PolicyState, name: str) -> PublicationRule:
        pub = policy.publications.get(name)
        if pub is None:
            raise UnknownSubscription(f"publication {name} does not exist", name=name)
        return pub

    def _may_subscribe(
        self: MemoryService, pub: PublicationRule, owner: str, policy: PolicyState
    ) -> None:
        """The terms that refuse a subscription outright: withdrawn, expired, not for it."""
        if pub.withdrawn:
            raise TermsViolated(
                f"publication {pub.name} was withdrawn", publication=pub.name, term="withdrawn"
            )
        if pub.expired(_now()):
            raise TermsViolated(
                f"publication {pub.name} expired at {pub.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                publication=pub.name,
                term="expires_at",
            )
        if not _grantee(pub.to, owner, policy):
            raise TermsViolated(
                f"publication {pub.name} is published to {', '.join(pub.to)}, not to {owner}",
                publication=pub.name,
                term="to",
            )

    def _sees_publication(
        self: MemoryService, caller: Caller, pub: PublicationRule, policy: PolicyState
    ) -> bool:
        if not caller.enforced or _grantee(pub.to, caller.principal, policy):
            return True
        return self.access.allowed(caller, "govern", namespace=pub.namespace)

    def _hub(self: MemoryService) -> SubscriptionHub:
        hub = self.backend.hub()
        if hub is None:
            raise Unsupported(
                "this process serves no subscriptions (a read-only store, or a Kafka worker: "
                "consume them from an embedded store or `memstream serve`)"
            )
        return hub

    def _served(self: MemoryService, caller: Caller, name: str) -> Any:
        """The consumer of ``name`` acknowledgements go to (on the Kafka runtime, one that
        routes each position to its partition's owner)."""
        rule = self._owned(caller, name)
        hub = self._hub()
        if getattr(hub, "partitioned", False):
            return hub.routed(caller, rule)
        return hub.consumer(rule)

    def _embedded_query(self: MemoryService, f: SubscriptionFilter) -> Any:
        s = f.semantic
        assert s is not None
        model = self.backend.query_model()
        if model is None:
            raise BadRequest(
                "a semantic filter needs the store's embedding model, and this store keeps no "
                "search indexes (opened with semantic=False or $MEMSTREAM_SEMANTIC=0)",
                field="filter.semantic",
            )
        dim, model_id = model
        if s.vector is None:
            if not s.query:
                raise BadRequest(
                    "a semantic filter needs query (a text) or vector", field="filter.semantic"
                )
            vector = [float(x) for x in self.backend.embed_query(s.query)]
            return msgspec.structs.replace(s, vector=vector, model=model_id)
        if len(s.vector) != dim:
            raise BadRequest(
                f"filter.semantic.vector has {len(s.vector)} dimensions; the store's model "
                f"{model_id!r} has {dim}",
                field="filter.semantic.vector",
            )
        return msgspec.structs.replace(s, model=model_id)

    def _subscription_view(
        self: MemoryService,
        rule: SubscriptionRule,
        hub: SubscriptionHub | None,
        consumer: Consumer | None = None,
    ) -> SubscriptionView:
        """The view of ``rule``, with its position from ``hub`` (None: without)."""
        if consumer is None and hub is not None:
            consumer = hub.existing(rule.name)
        stats = consumer.stats() if consumer is not None else None
        cursor = None
        parked = None
        if consumer is not None:
            cursor = consumer.cursor
            parked = consumer.cursors.parked_count(rule.name, rule.generation)
        elif hub is not None:
            saved = hub.cursors.position(rule.name, rule.generation)
            cursor = saved.cursor if saved is not None else None
            parked = hub.cursors.parked_count(rule.name, rule.generation)
        return SubscriptionView(
            name=rule.name, owner=rule.owner, filter=msgspec.to_builtins(rule.filter),
            start=rule.start, start_offset=rule.start_offset, start_time=rule.start_time,
            view=rule.view, max_in_flight=rule.max_in_flight, ack_timeout=rule.ack_timeout,
            publication=rule.publication, description=rule.description,
            generation=rule.generation, created_at=rule.created_at, created_by=rule.created_by,
            updated_at=rule.updated_at, updated_by=rule.updated_by, cursor=cursor,
            parked=parked, stats=stats,
        )  # fmt: skip


def _publication_view(p: PublicationRule) -> PublicationView:
    return PublicationView(
        name=p.name, namespace=p.namespace, tag=p.tag, memory_id=p.memory_id, to=list(p.to),
        expires_at=p.expires_at, max_deliveries=p.max_deliveries,
        period_seconds=p.period_seconds, redact=p.redact, description=p.description,
        withdrawn=p.withdrawn, published_at=p.published_at, published_by=p.published_by,
        updated_at=p.updated_at, updated_by=p.updated_by,
    )  # fmt: skip


def _filter(value: Any) -> SubscriptionFilter:
    if value is None:
        return SubscriptionFilter()
    if isinstance(value, SubscriptionFilter):
        value = msgspec.to_builtins(value)
    if not isinstance(value, dict):
        raise BadRequest(
            f"filter must be a SubscriptionFilter or an object, not {type(value).__name__}",
            field="filter",
        )
    try:
        return msgspec.convert(value, SubscriptionFilter)
    except msgspec.ValidationError as e:
        raise BadRequest(f"filter: {e}", field="filter") from None


def parked_views(parked: list[Parked], partition: int | None = None) -> list[ParkedDelivery]:
    """The views of parked deliveries (their positions naming ``partition``, if given)."""
    return [
        ParkedDelivery(
            subscription=p.subscription,
            position=p.offset if partition is None else encode(partition, p.offset),
            event_id=p.event_id,
            memory_id=p.memory_id,
            attempts=p.attempts,
            reason=p.reason,
            parked_at=datetime.fromtimestamp(p.parked_at, UTC),
        )  # fmt: skip
        for p in parked
    ]


def _positions(value: Any, field: str) -> list[int]:
    """A list of delivery positions (offsets), checked."""
    if not isinstance(value, list | tuple):
        raise BadRequest(f"{field} must be a list of positions, not {type(value).__name__}", field)
    return [check.integer(v, field, optional=False, minimum=0) for v in value]


def _start(value: Any) -> tuple[str, int | None, datetime | None]:
    """``start`` as (kind, offset, time)."""
    if value is None or value == "now":
        return "now", None, None
    if value == "beginning":
        return "beginning", None, None
    point = check.point(value, "start")
    if isinstance(point, int):
        if point < 0:
            raise BadRequest(f"start must be an offset >= 0, not {point}", field="start")
        return "offset", point, None
    return "time", None, point


class Subscriber:
    """Deliveries of one subscription, checked as they are made (see the module docstring).

    Iterate it (``for d in sub``, ``async for d in sub``): each item is a
    :class:`~memstream.schemas.views.Delivery`, or a
    :class:`~memstream.schemas.views.Heartbeat` after ``heartbeat`` seconds with nothing
    to deliver. Acknowledge with :meth:`ack` / :meth:`ack_upto`, reject with :meth:`nack`;
    what is not acknowledged within the subscription's ``ack_timeout`` is delivered again.
    """

    def __init__(
        self,
        service: MemoryService,
        caller: Caller,
        consumer: Consumer,
        heartbeat: float,
        *,
        hub: SubscriptionHub | None = None,
        partition: int | None = None,
    ):
        """``partition``: the Kafka runtime's partition ``consumer`` serves (positions then
        name it: :mod:`memstream.pubsub.positions`); ``hub``: the hub that made it (changes
        of the subscription are applied through it)."""
        self.service = service
        self.caller = caller
        self.consumer = consumer
        self.name = consumer.name
        self.heartbeat = heartbeat
        self.hub = hub
        self.partition = partition
        self._reader: tuple[int, dict[tuple[str, str], bool]] = (-2, {})

    # -- receiving ----------------------------------------------------------------------------

    def next(self, timeout: float | None = None) -> Delivery | Heartbeat:
        """The next delivery, or a heartbeat after ``timeout`` (default: the handle's
        heartbeat interval) seconds with none."""
        wait = self.heartbeat if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            self._refresh()
            try:
                item = self.consumer.next(max(0.0, deadline - time.monotonic()))
            except ConsumerClosed as e:
                raise SubscriptionClosed(str(e)) from None
            if item is None:
                return self._heartbeat()
            out = self._deliver(item)
            if out is not None:
                return out

    async def next_async(self, timeout: float | None = None) -> Delivery | Heartbeat:
        """:meth:`next` for coroutines."""
        wait = self.heartbeat if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            self._refresh()
            try:
                item = await self.consumer.next_async(max(0.0, deadline - time.monotonic()))
            except ConsumerClosed as e:
                raise SubscriptionClosed(str(e)) from None
            if item is None:
                return self._heartbeat()
            if self._slow():  # a read of the memory's view, or redaction: off the loop
                out = await asyncio.to_thread(self._deliver, item)
            else:
                out = self._deliver(item)
            if out is not None:
                return out

    def _slow(self) -> bool:
        """Whether making a delivery reads storage or runs the scanner (the rest of it is
        lookups in memory)."""
        rule = self.consumer.rule
        if rule.view:
            return True
        if rule.publication is None:
            return False
        pub = self.service.backend.policy().publications.get(rule.publication)
        return pub is not None and pub.redact

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

    # -- acknowledging ------------------------------------------------------------------------

    def ack(self, *positions: int) -> int:
        """Acknowledge deliveries by position; how many were in flight."""
        return self.consumer.ack(self._offsets(_positions(list(positions), "positions")))

    def ack_upto(self, position: int) -> int:
        """Acknowledge every delivery in flight at or below ``position`` (on the Kafka
        runtime: in ``position``'s partition)."""
        position = check.integer(position, "position", optional=False)
        offsets = self._offsets([position])
        return self.consumer.ack_upto(offsets[0]) if offsets else 0

    def nack(self, position: int, *, reason: str | None = None, park: bool = True) -> bool:
        """Reject a delivery: parked with ``reason`` (default), or delivered again now."""
        offsets = self._offsets([check.integer(position, "position", optional=False)])
        return bool(offsets) and self.consumer.nack(offsets[0], reason=reason, park=park)

    def resend_after(self, position: int) -> None:
        """The consumer saw deliveries up to ``position`` (a ``Last-Event-ID``): those in
        flight beyond it go out again at once."""
        offsets = self._offsets([position])
        if offsets:
            self.consumer.resend_after(offsets[0])

    def _offsets(self, positions: list[int]) -> list[int]:
        """The offsets of ``positions`` (of this handle's partition, when it has one)."""
        if self.partition is None:
            return positions
        out = []
        for position in positions:
            p, offset = decode(position)
            if p == self.partition:
                out.append(offset)
        return out

    def _position(self, offset: int) -> int:
        return offset if self.partition is None else encode(self.partition, offset)

    def watch(self, ready: ReadySet) -> None:
        """Mark this subscriber in ``ready`` whenever it may have something to deliver:
        one thread then serves many subscribers without polling each in turn (see
        :mod:`memstream.pubsub.ready`)::

            ready = ReadySet()
            for sub in subs:
                sub.watch(ready)
            while True:
                for sub in ready.wait(timeout=1.0) or subs:  # none marked: ask every one
                    while not isinstance(d := sub.next(timeout=0), Heartbeat):
                        handle(d)
                        sub.ack(d.position)
        """
        self.consumer.watch(ready, self)

    def unwatch(self, ready: ReadySet) -> None:
        self.consumer.unwatch(ready, self)

    def close(self) -> None:
        """Stop receiving (what is in flight stays in flight: it is delivered again after
        its timeout, to this subscription's next consumer)."""

    # -- making a delivery --------------------------------------------------------------------

    def _heartbeat(self) -> Heartbeat:
        c = self.consumer
        scanned, cursor, in_flight = c.position()
        if self.partition is not None:
            return Heartbeat(
                subscription=self.name, position=-1, cursor=-1, head=-1, in_flight=in_flight,
                at=_now(), partitions={self.partition: scanned},
            )  # fmt: skip
        return Heartbeat(
            subscription=self.name, position=scanned, cursor=cursor, head=c.feed.decided,
            in_flight=in_flight, at=_now(),
        )  # fmt: skip

    def _refresh(self) -> None:
        """Before taking a delivery: the subscription as it stands now (deleted: closed;
        changed: applied), and a publication's terms that stop deliveries."""
        svc = self.service
        policy = svc.backend.policy()
        current = policy.subscriptions.get(self.name)
        rule = self.consumer.rule
        if current is None or current.generation != rule.generation:
            raise SubscriptionClosed(f"subscription {self.name} was deleted")
        if current.offset != rule.offset and self.hub is not None:
            self.hub.refresh(current)
            rule = self.consumer.rule
        if rule.publication is None:
            return
        pub = policy.publications.get(rule.publication)
        if pub is None or pub.withdrawn:
            return  # the withdrawal is still to be delivered; nothing else matches now
        svc._may_subscribe(pub, rule.owner, policy)
        if pub.max_deliveries is not None:
            period = int(time.time() // pub.period_seconds)
            used = self.consumer.cursors.used(pub.name, rule.owner, period)
            if used >= pub.max_deliveries:
                left = (period + 1) * pub.period_seconds - time.time()
                raise TermsViolated(
                    f"publication {pub.name} allows {pub.max_deliveries} deliveries per "
                    f"{pub.period_seconds} s to {rule.owner}; used up: retry in {left:.0f} s",
                    publication=pub.name,
                    term="max_deliveries",
                    retry_after=left,
                )

    def _readable(self, owner: str, namespace: str, memory_id: str, policy: PolicyState) -> bool:
        """Whether ``owner`` may read the memory now (cached per rules version)."""
        if policy.offset != self._reader[0]:
            self._reader = (policy.offset, {})
        cache = self._reader[1]
        key = (namespace, memory_id)
        ok = cache.get(key)
        if ok is None:
            ok = policy.allows(
                owner, "read", namespace=namespace, memory_id=memory_id,
                context=self.caller.context, now=_now(),
            )  # fmt: skip
            if len(cache) > 100_000:
                cache.clear()
            cache[key] = ok
        return ok

    def _deliver(self, item: Item) -> Delivery | None:
        """The delivery of ``item``, or None when it must not go out (resolved instead)."""
        svc = self.service
        backend = svc.backend
        rule = self.consumer.rule
        logged, out = item.decided
        ev = logged.event
        policy = backend.policy()
        checked = self.caller.enforced or rule.owner in policy.principals
        pub = policy.publications.get(rule.publication) if rule.publication else None
        governance = ev.type in GOVERNANCE_TYPES
        if governance:
            ok = (pub is not None and ev.type in PUBSUB_TYPES and ev.memory_id == pub.name) or (
                pub is None
                and (
                    not checked
                    or policy.allows(rule.owner, "audit", context=self.caller.context, now=_now())
                )
            )
        elif pub is not None:
            ok = not pub.withdrawn and not pub.expired(_now())
        else:
            ok = not checked or self._readable(rule.owner, ev.namespace, ev.memory_id, policy)
        if not ok:
            self.consumer.ack([item.offset])
            return None
        state = None if governance else backend.decided(ev.memory_id)
        tomb = (
            ev.type == "erase"
            or ev.payload is None
            or (state is not None and state.state == "erased")
        )
        event = _public_event(ev, tomb)
        memory = None
        if rule.view and not tomb and not governance:
            # views come from the lane that follows commits; a delivery matched before its
            # subscription asked for views may not be committed yet: wait for it
            try:
                self.consumer.feed.wait(item.offset - 1, VIEW_WAIT)
            except FeedClosed:
                raise SubscriptionClosed("the store closed") from None
            memory = backend.get(
                self.caller, ev.memory_id, namespace=ev.namespace, version=None, as_of=None,
                min_offset=None,
            )  # fmt: skip
        provenance = None
        if pub is not None and not governance:
            if pub.redact and not tomb:
                event, memory = _redacted(event, memory)
            provenance = Provenance(
                store=backend.store_id(), namespace=ev.namespace, memory_id=ev.memory_id,
                version=out.version, publication=pub.name,
            )  # fmt: skip
            if pub.max_deliveries is not None:
                period = int(time.time() // pub.period_seconds)
                self.consumer.cursors.use(pub.name, rule.owner, period)
        if svc.accesses is not None:
            svc.accesses.delivered(
                self.caller,
                ev.namespace,
                ev.memory_id,
                self.name,
                self._position(item.offset),
                pub.name if pub is not None else None,
            )
        return Delivery(
            subscription=self.name, position=self._position(item.offset), attempt=item.attempt,
            kind="tombstone" if tomb else "event", event=event, outcome=out.public(),
            memory=memory, provenance=provenance, partition=self.partition,
        )  # fmt: skip


def _public_event(ev: Event, tomb: bool) -> dict[str, Any]:
    """The event as a delivery carries it: never the sealed original, never a token's hash;
    a tombstone keeps the envelope and the payload's clear fields only."""
    body = msgspec.to_builtins(ev)
    payload = body.get("payload")
    if tomb:
        clear = ev.payload.CLEAR if ev.payload is not None else ()
        kept = {k: v for k, v in (payload or {}).items() if k in clear}
        body["payload"] = None
        body["clear"] = {**(body.get("clear") or {}), **kept}
    elif isinstance(payload, dict):
        for k in (*_SEALED, *(_SECRET if ev.namespace == GOVERNANCE_NAMESPACE else ())):
            payload.pop(k, None)
    return body


def _redacted(event: dict[str, Any], memory: Any) -> tuple[dict[str, Any], Any]:
    """A published event (and view) with sensitive values replaced (a publication's
    ``redact`` term)."""
    from memstream.governance.sensitive import default_scanner

    scanner = default_scanner()
    payload = event.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        red = scanner.redact_memory(
            payload["text"], payload.get("tags") or [], payload.get("metadata") or {}
        )
        event = {**event, "payload": {**payload, "text": red.text, "tags": red.tags,
                                      "metadata": red.metadata}}  # fmt: skip
    if memory is not None and memory.text is not None:
        red = scanner.redact_memory(memory.text, memory.tags, memory.metadata)
        memory = msgspec.structs.replace(
            memory, text=red.text, tags=red.tags, metadata=red.metadata, content_hash=None
        )
    return event, memory
