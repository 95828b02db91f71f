"""The subscriptions of one store: their consumers, and the processors that feed them live.

:class:`SubscriptionHub` keeps one :class:`~memstream.pubsub.consumer.Consumer` per
subscription being consumed in this process, made on first use from the subscription's
rule (the governance state folds subscriptions from their events). Processors, run by the
processor runner beside the search indexes, push matches to the consumers that keep up
(:class:`HubLane`):

- ``subscriptions`` answers every filter without a semantic condition through one
  :class:`~memstream.projections.matching.FilterIndex`: an event costs the filters filed
  under its own keys, not one comparison per subscription. It follows decisions: a match
  goes out as soon as the writer has decided the event, a DuckDB transaction before the
  store's tables show it;
- ``subscriptions-views`` does the same, after the core projection's commit, for the
  subscriptions whose deliveries carry the memory's view (read from those tables);
- ``subscriptions-semantic`` answers the filters with a semantic condition: it embeds each
  new memory text once (through the embedding cache the vector index fills, so the text is
  embedded once for both), compares the batch with every query vector in one matrix
  product, and compares the other conditions of the pairs close enough only
  (:class:`~memstream.projections.matching.FilterSet`). It has a lane of its own so that
  embedding never delays the other deliveries, and follows commits (its deliveries may
  carry views; the embedding dominates its latency).

A lane with no live consumer does nothing but move its checkpoint.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime

import msgspec
import numpy as np
import numpy.typing as npt

from memstream.projections.context import indexed
from memstream.projections.matching import TEXT_TYPES, EventFacts, FilterSet, facts_of
from memstream.projections.policy import PolicyState
from memstream.projections.processor import Decided, ProcessorContext
from memstream.projections.subscriptions import SubscriptionRule, start_after
from memstream.schemas.events import PUBSUB_TYPES, SubscriptionFilter
from memstream.streams.feed import DecidedFeed

from .consumer import Consumer
from .cursors import CursorStore

__all__ = ["Embed", "HubLane", "SubscriptionHub", "effective_filter", "text_of"]

log = logging.getLogger("memstream.pubsub")

#: ``(cache key, text)`` pairs to their vectors (rows), from the embedding cache.
Embed = Callable[[Sequence[tuple[str, str]]], npt.NDArray[np.float32]]
_PUBLICATION_EVENTS = frozenset({"publication", "publication_withdraw"})


def effective_filter(rule: SubscriptionRule, policy: PolicyState) -> SubscriptionFilter:
    """The filter a subscription applies: its own, narrowed to its publication's memories
    when it subscribes to one (nothing, once the publication is withdrawn: then only the
    publication's own events reach it)."""
    if rule.publication is None:
        return rule.filter
    pub = policy.publications.get(rule.publication)
    f = rule.filter
    if pub is None or pub.withdrawn:
        return msgspec.structs.replace(f, namespaces=["-"], memory_ids=["-"])
    return msgspec.structs.replace(
        f,
        namespaces=[pub.namespace],
        memory_ids=[pub.memory_id] if pub.memory_id else f.memory_ids,
        tags_all=[*f.tags_all, pub.tag] if pub.tag else f.tags_all,
    )


def text_of(d: Decided) -> tuple[str, str, list[float] | None] | None:
    """``(cache key, indexed text, producer vector)`` of an event that carries a memory's
    text (a create, a revise, a merge, not erased), else None."""
    logged = d[0]
    ev = logged.event
    p = ev.payload
    if ev.type not in TEXT_TYPES or p is None:
        return None
    text = getattr(p, "text", None)
    if text is None or logged.content_hash is None:
        return None
    full, key = indexed(text, logged.content_hash, getattr(p, "metadata", None))
    return key or logged.content_hash, full, getattr(p, "vector", None)


class _Matcher:
    """Filters (and semantic conditions) of a set of subscriptions, answered per batch."""

    def __init__(self, embed: Embed | None):
        self.filters = FilterSet()
        self.by_publication: dict[str, set[str]] = defaultdict(set)
        self.embed = embed

    def add(self, name: str, f: SubscriptionFilter, publication: str | None) -> None:
        self.remove(name)
        self.filters.add(name, f)
        if publication is not None:
            self.by_publication[publication].add(name)

    def remove(self, name: str) -> None:
        self.filters.remove(name)
        for names in self.by_publication.values():
            names.discard(name)

    def __len__(self) -> int:
        return len(self.filters)

    def match(self, batch: Sequence[Decided]) -> dict[str, list[Decided]]:
        """The matches of each subscription among ``batch``, in log order."""
        out: dict[str, list[Decided]] = defaultdict(list)
        texts: list[tuple[int, EventFacts]] = []  # the events to compare by meaning
        fs = self.filters
        by_pub = self.by_publication
        for i, d in enumerate(batch):
            f: EventFacts = facts_of(*d)
            names = fs.without_text(f)
            if f.type in _PUBLICATION_EVENTS and f.memory_id in by_pub:
                for n in by_pub[f.memory_id]:  # a publication's own events reach it
                    c = fs.get(n)
                    if c is not None and not c.needs_text(f) and n not in names:
                        names.append(n)
            for n in names:
                out[n].append(d)
            if fs.needs_meaning(f):
                texts.append((i, f))
        if texts:
            self._by_meaning(batch, texts, out)
        return out

    def _by_meaning(
        self,
        batch: Sequence[Decided],
        texts: list[tuple[int, EventFacts]],
        out: dict[str, list[Decided]],
    ) -> None:
        """The semantic matches of the events in ``texts``: their vectors (the producer's,
        else the embedding cache's), then :meth:`FilterSet.by_meaning`."""
        rows = [(i, f, text_of(batch[i])) for i, f in texts]
        rows = [(i, f, t) for i, f, t in rows if t is not None]
        if not rows or self.embed is None:
            return
        own = [k for k, (_, _, t) in enumerate(rows) if t[2] is None]
        given = [k for k, (_, _, t) in enumerate(rows) if t[2] is not None]
        embedded = self.embed([(rows[k][2][0], rows[k][2][1]) for k in own]) if own else None
        dim = embedded.shape[1] if embedded is not None else len(rows[given[0]][2][2] or ())
        vectors = np.zeros((len(rows), dim), np.float32)
        if embedded is not None:
            vectors[own] = embedded
        for k in given:
            v = rows[k][2][2]
            if v is not None and len(v) == dim:
                vectors[k] = v
        hits = self.filters.by_meaning([f for _, f, _ in rows], vectors)
        touched = set()
        for (i, _, _), names in zip(rows, hits, strict=True):
            for n in names:
                out[n].append(batch[i])
                touched.add(n)
        for n in touched:
            out[n].sort(key=lambda d: d[0].offset)


class HubLane:
    """A processor that pushes live matches to the consumers that keep up (see the module
    docstring for the three of a hub)."""

    def __init__(
        self,
        name: str,
        embed: Embed | None,
        policy: Callable[[], PolicyState],
        on_rules: Callable[[list[str]], None] | None = None,
        *,
        follows_decisions: bool = False,
    ):
        """``on_rules(names)``: called (outside the lane's lock) after a batch that holds
        subscription or publication events, with the names they are about.
        ``follows_decisions``: matches go out as soon as the writer decided their events
        (matching reads only the event, its verdict and the rules), not after the core
        projection's commit; the consumers of this lane read the log the same way."""
        self.name = name
        self.follows_decisions = follows_decisions
        self.policy = policy
        self.on_rules = on_rules
        self.matcher = _Matcher(embed)
        self.consumers: dict[str, Consumer] = {}
        self.lock = threading.Lock()
        #: the last offset pushed (-2: not started)
        self.position = -2

    # -- the processor protocol ---------------------------------------------------------------

    def start(self, ctx: ProcessorContext) -> int:
        with self.lock:
            self.position = ctx.head
        return ctx.head

    def process(self, batch: Sequence[Decided]) -> None:
        last = batch[-1][0].offset
        with self.lock:
            if self.consumers:
                # only the consumers with matches are touched: the others learn how far
                # the lane has looked from its position
                for name, found in self.matcher.match(batch).items():
                    c = self.consumers.get(name)
                    if c is not None and not c.push(found):
                        self._detach(name)  # it has every match up to the last position
            self.position = last
        if self.on_rules is not None:
            names = [lg.event.memory_id for lg, out in batch if lg.event.type in PUBSUB_TYPES]
            if names:
                self.on_rules(names)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        with self.lock:
            for name in list(self.consumers):
                self._detach(name)

    # -- consumers -----------------------------------------------------------------------------

    def attach(self, c: Consumer) -> bool:
        """Make ``c`` live if it has read as far as this lane has pushed (else it reads on)."""
        with self.lock:
            with c.cond:
                if c.closed is not None or c.scanned < self.position or self.position < -1:
                    return False
                f = effective_filter(c.rule, self.policy())
                self.matcher.add(c.name, f, c.rule.publication)
                self.consumers[c.name] = c
                c.live = True
                c._notify()
                return True

    def detach(self, name: str) -> None:
        with self.lock:
            self._detach(name)

    def _detach(self, name: str) -> None:
        c = self.consumers.pop(name, None)
        self.matcher.remove(name)
        if c is not None:
            with c.cond:
                if c.live:  # it holds every match up to this lane's position
                    c.scanned = max(c.scanned, self.position)
                c.live = False
                c._notify()

    def refresh(self, c: Consumer) -> None:
        """``c``'s filter changed: file it again if it is live."""
        with self.lock:
            if c.name in self.consumers:
                f = effective_filter(c.rule, self.policy())
                self.matcher.add(c.name, f, c.rule.publication)


class SubscriptionHub:
    """The consumers of one store's subscriptions, and the lanes that feed them."""

    def __init__(
        self,
        cursors: CursorStore,
        policy: Callable[[], PolicyState],
        *,
        embed: Embed | None = None,
        partition: int | None = None,
    ):
        """``embed``: the embedding cache's lookup (None: the store keeps no vectors, and
        semantic filters are refused). The lanes run on the store's processor runner; the
        store then gives the hub its feed (:meth:`bind`). ``partition``: the hub of one
        partition of the Kafka runtime's log (a subscription that starts ``now`` starts there
        at the time it was created: its generation is an offset of another partition)."""
        self.partition = partition
        self.cursors = cursors
        self.policy = policy
        self.embed = embed
        self.feed: DecidedFeed | None = None
        self.before: Callable[[datetime], int] | None = None
        self.plain = HubLane("subscriptions", None, policy, self.changed, follows_decisions=True)
        self.views = HubLane("subscriptions-views", None, policy)
        self.semantic = (
            HubLane("subscriptions-semantic", embed, policy) if embed is not None else None
        )
        self._consumers: dict[str, Consumer] = {}
        self._lock = threading.Lock()

    def bind(self, feed: DecidedFeed, before: Callable[[datetime], int]) -> None:
        """The store's feed of decided events, and ``before(t)``: the last offset recorded
        before a time (where a subscription that starts at ``t`` begins)."""
        self.feed, self.before = feed, before

    @property
    def lanes(self) -> list[HubLane]:
        return [self.plain, self.views] + ([self.semantic] if self.semantic is not None else [])

    def consumer(self, rule: SubscriptionRule) -> Consumer:
        """The consumer of ``rule``'s subscription in this process (made on first use; a
        changed rule applies to it; a new generation replaces it)."""
        with self._lock:
            c = self._consumers.get(rule.name)
            if c is not None and c.generation != rule.generation:
                self._drop(c, f"subscription {rule.name} was deleted and created again")
                c = None
            if c is None:
                if self.feed is None:
                    raise RuntimeError("the subscription hub is not bound to a store yet")
                lane = self._lane_of(rule)
                if self.partition is not None and rule.start == "now":
                    assert self.before is not None
                    start = self.before(rule.created_at)
                else:
                    start = start_after(rule, self.before)
                c = Consumer(
                    rule, start, self.cursors, self.feed, self._selector(rule), lane, self.before,
                )  # fmt: skip
                self._consumers[rule.name] = c
            elif c.rule.offset != rule.offset:
                self._change(c, rule)
            return c

    def _lane_of(self, rule: SubscriptionRule) -> HubLane:
        if rule.filter.semantic is not None:
            if self.semantic is None:
                raise ValueError("this store has no embedding model: semantic filters need one")
            return self.semantic
        return self.views if rule.view else self.plain

    def _selector(self, rule: SubscriptionRule) -> Callable[[Sequence[Decided]], list[Decided]]:
        """``rule``'s matches among a batch, for a consumer's own reads."""
        matcher = _Matcher(self.embed)
        matcher.add(rule.name, effective_filter(rule, self.policy()), rule.publication)
        return lambda batch: matcher.match(batch).get(rule.name, [])

    def _change(self, c: Consumer, rule: SubscriptionRule) -> None:
        lane = self._lane_of(rule)
        if lane is not c.lane:  # a semantic condition or the view changed: follow another
            c.lane.detach(c.name)
            c.lane = lane
        c.change(rule, self._selector(rule))
        c.lane.refresh(c)

    def changed(self, names: Sequence[str]) -> None:
        """Subscriptions or publications changed (their events were decided): apply."""
        policy = self.policy()
        with self._lock:
            for name in names:  # deleted, and never consumed in this process
                if name not in policy.subscriptions and name not in self._consumers:
                    self.cursors.forget(name)
            for c in list(self._consumers.values()):
                rule = policy.subscriptions.get(c.name)
                if rule is None or rule.generation != c.generation:
                    self._drop(c, f"subscription {c.name} was deleted")
                    if rule is None:
                        self.cursors.forget(c.name)
                elif rule.offset != c.rule.offset or (
                    rule.publication is not None and rule.publication in names
                ):
                    self._change(c, rule)

    def _drop(self, c: Consumer, why: str) -> None:
        c.lane.detach(c.name)
        c.close(why)
        self._consumers.pop(c.name, None)

    def refresh(self, rule: SubscriptionRule) -> None:
        """Apply ``rule`` to its consumer here, if it changed (a hub that does not see the
        subscription events itself: a partition of the Kafka runtime)."""
        with self._lock:
            c = self._consumers.get(rule.name)
            if c is not None and c.generation == rule.generation and c.rule.offset != rule.offset:
                self._change(c, rule)

    def existing(self, name: str) -> Consumer | None:
        with self._lock:
            return self._consumers.get(name)

    def stop(self, why: str = "the store closed") -> None:
        """End every consumer (they raise :class:`ConsumerClosed`; positions saved). The
        lanes may still run: close the cursors once they stopped (:meth:`close`)."""
        with self._lock:
            for c in list(self._consumers.values()):
                c.lane.detach(c.name)
                c.close(why)
            self._consumers.clear()

    def close(self, why: str = "the store closed") -> None:
        """:meth:`stop`, then close the cursors (the lanes must have stopped)."""
        self.stop(why)
        self.cursors.close()
