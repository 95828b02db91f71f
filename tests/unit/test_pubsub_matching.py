"""Subscription filters: the index answers exactly what each filter answers alone, and the
semantic matcher keeps the subscriptions whose threshold a text meets."""

from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from memstream.projections.matching import (
    TEXT_TYPES,
    CompiledFilter,
    EventFacts,
    FilterIndex,
    FilterSet,
    SemanticMatcher,
    facts_of,
)
from memstream.schemas.events import SemanticFilter, SubscriptionFilter

NAMESPACES = ["user/alice", "user/bob", "team/a", "team/a/x", "team/b", "org"]
PATTERNS = [*NAMESPACES, "team/*", "user/*", "team/a/*", "*"]
TYPES = ["create", "revise", "archive", "erase", "merge"]
TAGS = ["diet", "work", "health", "x"]


def small(values: list[str], most: int = 2) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), max_size=most, unique=True)


filters = st.builds(
    SubscriptionFilter,
    namespaces=small(PATTERNS),
    types=small(TYPES),
    outcomes=st.sampled_from([["accepted"], ["rejected"], ["accepted", "rejected"]]),
    memory_ids=small(["m1", "m2", "m3"], 1),
    tags_any=small(TAGS),
    tags_all=small(TAGS),
    states=small(["active", "archived", "erased"], 1),
    kinds=small(["plaintext", "activation"], 1),
    actors=small(["alice", "bob"], 1),
)
facts = st.builds(
    EventFacts,
    offset=st.integers(0, 100),
    type=st.sampled_from(TYPES),
    status=st.sampled_from(["accepted", "rejected"]),
    namespace=st.sampled_from(NAMESPACES),
    memory_id=st.sampled_from(["m1", "m2", "m3", "m4"]),
    actor=st.sampled_from(["alice", "bob", "carol"]),
    tags=st.frozensets(st.sampled_from(TAGS), max_size=3),
    state=st.sampled_from(["active", "archived", "erased", None]),
    kind=st.sampled_from(["plaintext", "activation", None]),
)


def _with_semantic(f: SubscriptionFilter, sem: SemanticFilter) -> SubscriptionFilter:
    return msgspec.structs.replace(f, semantic=sem)


@settings(max_examples=200, deadline=None)
@given(st.lists(filters, min_size=1, max_size=30), st.lists(facts, min_size=1, max_size=30))
def test_the_index_matches_what_each_filter_matches_alone(fs, events) -> None:
    index = FilterIndex()
    for i, f in enumerate(fs):
        index.add(f"s{i}", f)
    for f in events:
        expected = {f"s{i}" for i, flt in enumerate(fs) if CompiledFilter(flt).matches(f)}
        assert set(index.match(f)) == expected


#: texts' and queries' vectors: cosines far from every threshold but 0 (orthogonal: exact)
UNIT = st.sampled_from([v for v in np.ndindex(2, 2, 2) if any(v)]).map(list)
semantic = st.builds(
    SemanticFilter, vector=UNIT.map(lambda v: [float(x) for x in v]),
    threshold=st.sampled_from([0.0, 0.3, 0.6, 0.9]),
)  # fmt: skip
mixed_filters = st.one_of(filters, st.builds(_with_semantic, filters, semantic))


def _alone(flt: SubscriptionFilter, f: EventFacts, vector: list[int] | None) -> bool:
    """What one filter answers by itself: its conditions, and its meaning for an event whose
    type carries a text (``vector``; None: it has none) unless it passes by type."""
    c = CompiledFilter(flt)
    if not c.matches(f):
        return False
    if flt.semantic is None or not c.needs_text(f):
        return True
    if f.type not in TEXT_TYPES or vector is None:
        return False
    q = np.asarray(flt.semantic.vector, dtype=np.float64)
    v = np.asarray(vector, dtype=np.float64)
    return float(q @ v / np.linalg.norm(q) / np.linalg.norm(v)) >= flt.semantic.threshold


@settings(max_examples=200, deadline=None)
@given(
    st.lists(mixed_filters, min_size=1, max_size=30),
    st.lists(st.tuples(facts, st.one_of(st.none(), UNIT)), min_size=1, max_size=30),
)
def test_the_filter_set_matches_what_each_filter_matches_alone(fs, events) -> None:
    """Meaning first (one product, one mask, then the other conditions of the pairs above
    threshold) answers what each filter answers alone, semantic conditions included."""
    filters_set = FilterSet()
    for i, f in enumerate(fs):
        filters_set.add(f"s{i}", f)
    got = [set(filters_set.without_text(f)) for f, _ in events]
    texts = [k for k, (f, v) in enumerate(events) if filters_set.needs_meaning(f) and v]
    if texts:
        vectors = np.asarray([events[k][1] for k in texts], dtype=np.float32)
        hits = filters_set.by_meaning([events[k][0] for k in texts], vectors)
        for k, names in zip(texts, hits, strict=True):
            assert not got[k] & set(names), "a filter met twice"
            got[k] |= set(names)
    for (f, v), names in zip(events, got, strict=True):
        assert names == {f"s{i}" for i, flt in enumerate(fs) if _alone(flt, f, v)}
    for i in range(0, len(fs), 2):  # removing leaves the others as they were
        filters_set.remove(f"s{i}")
    for f, _ in events:
        kept = set(filters_set.without_text(f))
        assert all(int(n[1:]) % 2 == 1 for n in kept)


def test_patterns_and_the_erase_rule() -> None:
    team = CompiledFilter(SubscriptionFilter(namespaces=["team/*"], tags_any=["diet"]))

    def fact(ns: str, type_: str = "create", tags: frozenset[str] = frozenset({"diet"})):
        return EventFacts(0, type_, "accepted", ns, "m1", "a", tags, "active", "plaintext")

    assert team.matches(fact("team")) and team.matches(fact("team/a/b"))
    assert not team.matches(fact("teams")) and not team.matches(fact("org/team"))
    # an erased memory has no tags left: its erase still reaches the tag subscription
    assert not team.matches(fact("team/a", "archive", frozenset()))
    assert team.matches(fact("team/a", "erase", frozenset()))
    index = FilterIndex()
    index.add("t", SubscriptionFilter(tags_any=["diet"]))
    assert index.match(fact("org", "erase", frozenset())) == ["t"]
    index.remove("t")
    assert index.match(fact("org", "create")) == [] and len(index) == 0


def test_rejected_events_only_when_asked() -> None:
    f = EventFacts(0, "revise", "rejected", "user/alice", "m1", "a", frozenset(), None, None)
    assert not CompiledFilter(SubscriptionFilter()).matches(f)
    assert CompiledFilter(SubscriptionFilter(outcomes=["rejected"])).matches(f)


def test_semantic_scores_keep_what_meets_each_threshold() -> None:
    m = SemanticMatcher()
    m.set("near", [1.0, 0.0, 0.0], 0.9)
    m.set("loose", [0.0, 1.0, 0.0], 0.1)
    vectors = np.asarray([[2.0, 0.1, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    hits = m.scores(vectors, [["near", "loose"], ["near", "loose"]])
    assert set(hits[0]) == {"near"} and hits[0]["near"] > 0.99
    assert hits[1] == {}
    # only the candidates asked about are scored
    assert m.scores(vectors[:1], [["loose"]]) == [{}]
    m.remove("near")
    assert len(m) == 1


def test_semantic_filter_needs_text_except_for_named_types() -> None:
    sem = SemanticFilter(vector=[1.0, 0.0], threshold=0.5)
    c = CompiledFilter(SubscriptionFilter(types=["create", "archive"], semantic=sem))

    def fact(type_: str) -> EventFacts:
        return EventFacts(0, type_, "accepted", "n", "m", "a", frozenset(), "active", None)

    assert c.needs_text(fact("create"))
    assert not c.needs_text(fact("archive"))  # named in types: passes without a text
    assert not c.needs_text(fact("erase"))


def test_facts_come_from_the_memory_as_the_event_left_it(store) -> None:
    out = store.create("user/alice", "Alice eats kale", tags=["diet"])
    store.archive(out.memory_id)
    batches = [b for b in store.follow(0, idle=0.2)]
    pairs = [p for b in batches for p in b]
    created = facts_of(*pairs[0])
    archived = facts_of(*pairs[1])
    assert created.tags == {"diet"} and created.state == "active"
    assert created.kind == "plaintext" and created.actor == "tester"
    assert archived.type == "archive" and archived.state == "archived"
    assert archived.tags == {"diet"}  # kept from the memory, not from the event
