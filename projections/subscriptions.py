"""Subscriptions and publications, folded from their events (pub/sub, the paper's MemStore).

Pure, like the rest of the governance projection (:mod:`.policy`, which folds these events
with the rules and calls :func:`apply` and :func:`verdict` here): a subscription or a
publication is the last ``subscription`` / ``publication`` event of its name, until a
``subscription_delete`` / ``publication_withdraw``. Folding up to an offset gives them as
they stood then.

A subscription's *generation* is the offset of the event that created it: deleting a
subscription and creating one of the same name starts a new generation, with a cursor of
its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from memstream.schemas.events import SubscriptionFilter

__all__ = [
    "PublicationRule",
    "SubscriptionRule",
    "apply",
    "start_after",
    "verdict",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

UNKNOWN_SUBSCRIPTION = "unknown_subscription"
UNKNOWN_PUBLICATION = "unknown_publication"
PUBLICATION_WITHDRAWN = "publication_withdrawn"


class SubscriptionRule(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as it stands (see :class:`memstream.schemas.events.SubscriptionSet`)."""

    name: str
    owner: str
    filter: SubscriptionFilter
    start: str = "now"
    start_offset: int | None = None
    start_time: datetime | None = None
    view: bool = False
    max_in_flight: int = 1_000
    ack_timeout: float = 30.0
    publication: str | None = None
    description: str | None = None
    #: the offset of the event that created it (its generation) and of the last change
    generation: int
    offset: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class PublicationRule(msgspec.Struct, frozen=True, kw_only=True):
    """A publication as it stands (see :class:`memstream.schemas.events.PublicationSet`)."""

    name: str
    namespace: str
    tag: str | None = None
    memory_id: str | None = None
    to: tuple[str, ...]
    expires_at: datetime | None = None
    max_deliveries: int | None = None
    period_seconds: int = 86_400
    redact: bool = False
    description: str | None = None
    withdrawn: bool = False
    #: the offset of its last event
    offset: int
    published_at: datetime
    published_by: str
    updated_at: datetime
    updated_by: str

    def selects(
        self, namespace: str, memory_id: str, tags: tuple[str, ...] | frozenset[str]
    ) -> bool:
        """Whether a memory of ``namespace`` with ``tags`` is published by it."""
        if namespace != self.namespace:
            return False
        if self.memory_id is not None and memory_id != self.memory_id:
            return False
        return self.tag is None or self.tag in tags

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return msgspec.convert(value, datetime)


def apply(
    subscriptions: dict[str, SubscriptionRule],
    publications: dict[str, PublicationRule],
    offset: int,
    type_: str,
    name: str,
    actor: str,
    recorded_at: int,
    body: dict[str, Any],
) -> tuple[dict[str, SubscriptionRule], dict[str, PublicationRule]]:
    """The maps after one accepted pub/sub event (new maps: the state is copy-on-write)."""
    at = _EPOCH + timedelta(microseconds=recorded_at)
    if type_ == "subscription":
        old = subscriptions.get(name)
        rule = SubscriptionRule(
            name=name,
            owner=body["owner"],
            filter=msgspec.convert(body.get("filter") or {}, SubscriptionFilter),
            start=body.get("start", "now"),
            start_offset=body.get("start_offset"),
            start_time=_time(body.get("start_time")),
            view=bool(body.get("view", False)),
            max_in_flight=int(body.get("max_in_flight", 1_000)),
            ack_timeout=float(body.get("ack_timeout", 30.0)),
            publication=body.get("publication"),
            description=body.get("description"),
            generation=old.generation if old else offset,
            offset=offset,
            created_at=old.created_at if old else at,
            created_by=old.created_by if old else actor,
            updated_at=at,
            updated_by=actor,
        )
        return {**subscriptions, name: rule}, publications
    if type_ == "subscription_delete":
        return {k: v for k, v in subscriptions.items() if k != name}, publications
    if type_ == "publication":
        old_p = publications.get(name)
        pub = PublicationRule(
            name=name,
            namespace=body["namespace"],
            tag=body.get("tag"),
            memory_id=body.get("memory_id"),
            to=tuple(body["to"]),
            expires_at=_time(body.get("expires_at")),
            max_deliveries=body.get("max_deliveries"),
            period_seconds=int(body.get("period_seconds", 86_400)),
            redact=bool(body.get("redact", False)),
            description=body.get("description"),
            offset=offset,
            published_at=old_p.published_at if old_p else at,
            published_by=old_p.published_by if old_p else actor,
            updated_at=at,
            updated_by=actor,
        )
        return subscriptions, {**publications, name: pub}
    if type_ == "publication_withdraw":
        withdrawn = msgspec.structs.replace(
            publications[name], withdrawn=True, offset=offset, updated_at=at, updated_by=actor
        )
        return subscriptions, {**publications, name: withdrawn}
    return subscriptions, publications


def verdict(
    subscriptions: dict[str, SubscriptionRule],
    publications: dict[str, PublicationRule],
    type_: str,
    name: str,
    body: dict[str, Any],
) -> tuple[str, str] | None:
    """Why a pub/sub event is rejected, as ``(code, reason)``; None: accepted. Structural
    checks only (who may is the service's check, made before the event is appended)."""
    if type_ == "subscription":
        pub = body.get("publication")
        if pub is not None:
            found = publications.get(pub)
            if found is None:
                return UNKNOWN_PUBLICATION, f"publication {pub} does not exist"
            if found.withdrawn:
                return PUBLICATION_WITHDRAWN, f"publication {pub} was withdrawn"
    elif type_ == "subscription_delete":
        if name not in subscriptions:
            return UNKNOWN_SUBSCRIPTION, f"subscription {name} does not exist (or was deleted)"
    elif type_ == "publication_withdraw":
        found = publications.get(name)
        if found is None:
            return UNKNOWN_PUBLICATION, f"publication {name} does not exist"
        if found.withdrawn:
            return PUBLICATION_WITHDRAWN, f"publication {name} was already withdrawn"
    return None


def start_after(rule: SubscriptionRule, before: Any = None) -> int:
    """The offset a new subscription's cursor starts after: its creation event (``now``),
    nothing (``beginning``: -1), the offset before ``start_offset``, or, for a time, the
    last offset recorded before ``start_time`` (``before(start_time)``)."""
    if rule.start == "beginning":
        return -1
    if rule.start == "offset":
        return max(-1, (rule.start_offset or 0) - 1)
    if rule.start == "time":
        assert before is not None and rule.start_time is not None
        return int(before(rule.start_time))
    return rule.generation
