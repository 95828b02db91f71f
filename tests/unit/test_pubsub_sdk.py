"""The pub/sub methods of the embedded SDK, end to end on real stores: subscriptions
created from keyword conditions, changed (the cursor stays), listed, deleted under a
running consumer, moved with seek; parked deliveries; publications seen and consumed by
another principal; and the asyncio face (``async for`` with acknowledgements)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path

import pytest

from memstream import (
    AsyncMemoryStore,
    BadRequest,
    Delivery,
    Heartbeat,
    MemoryStore,
    SubscriptionClosed,
    TermsViolated,
    UnknownSubscription,
)
from memstream.pubsub.methods import PubSub


def _drain(sub, *, idle: float = 0.3) -> list[Delivery]:
    """Every delivery until ``idle`` seconds pass with none, each acknowledged."""
    got = []
    while True:
        d = sub.next(timeout=idle)
        if isinstance(d, Heartbeat):
            return got
        got.append(d)
        sub.ack(d.position)


def _write(store: MemoryStore, n: int, namespace: str = "user/alice", **kw) -> list[int]:
    return [store.create(namespace, f"note {i}", **kw).offset for i in range(n)]


def test_the_store_offers_every_pubsub_method():
    declared = {n for n, f in vars(PubSub).items() if getattr(f, "__isabstractmethod__", False)}
    assert declared == {
        "create_subscription", "subscriptions", "get_subscription", "delete_subscription",
        "subscribe", "seek", "parked", "unpark", "publish", "withdraw", "publications",
        "get_publication",
    }  # fmt: skip
    assert not MemoryStore.__abstractmethods__
    for name in declared:  # the same parameters, in the same order, as declared
        mine = inspect.signature(getattr(MemoryStore, name)).parameters
        assert list(mine) == list(inspect.signature(getattr(PubSub, name)).parameters), name


def test_keyword_conditions_build_the_filter_and_select_the_deliveries(store):
    view = store.create_subscription(
        "diet", namespaces=["user/*"], tags_any=["diet", "food"], types=["create", "revise"],
        description="what they eat",
    )  # fmt: skip
    assert view.filter["namespaces"] == ["user/*"]
    assert view.filter["tags_any"] == ["diet", "food"]
    assert view.filter["types"] == ["create", "revise"]
    assert view.filter["outcomes"] == ["accepted"] and view.filter["semantic"] is None
    assert view.description == "what they eat" and view.owner == "tester"
    kale = store.create("user/alice", "Alice eats kale", tags=["diet"]).offset
    store.create("user/alice", "Alice's bank", tags=["money"])
    store.create("team/ops", "the canteen serves fish", tags=["food"])  # another namespace
    soup = store.create("user/bob", "Bob likes soup", tags=["food"])
    store.archive(soup.memory_id)  # a type not asked for
    sub = store.subscribe("diet", heartbeat=0.2)
    assert [d.position for d in _drain(sub)] == [kale, soup.offset]
    # the same filter as a dict, or as filter= alone
    same = store.create_subscription("diet2", filter=dict(view.filter))
    assert same.filter == view.filter


def test_conditions_given_twice_or_out_of_place_are_refused_by_name(store):
    with pytest.raises(BadRequest) as both:
        store.create_subscription("s", filter={"types": ["create"]}, namespaces=["user/*"])
    assert both.value.field == "filter" and "namespaces" in str(both.value)
    with pytest.raises(BadRequest) as lone:
        store.create_subscription("s", namespaces="user/alice")
    assert lone.value.field == "namespaces"
    with pytest.raises(BadRequest) as threshold:
        store.create_subscription("s", threshold=0.8)
    assert threshold.value.field == "threshold"
    with pytest.raises(BadRequest) as bad:
        store.create_subscription("s", outcomes=["maybe"])
    assert bad.value.field == "filter" and "maybe" in str(bad.value)
    # without the search indexes a semantic condition says what it needs
    with pytest.raises(BadRequest, match="embedding model") as semantic:
        store.create_subscription("s", query="tea")
    assert semantic.value.field == "filter.semantic"
    assert store.subscriptions() == []  # nothing was created


def test_list_get_and_a_change_that_keeps_the_cursor(store):
    store.create_subscription("a", namespaces=["user/alice"], start="beginning")
    store.create_subscription("b", namespaces=["user/bob"])
    assert [v.name for v in store.subscriptions()] == ["a", "b"]
    first = _write(store, 3)
    sub = store.subscribe("a", heartbeat=0.2)
    d1, d2 = sub.next(timeout=2), sub.next(timeout=2)
    assert [d1.position, d2.position] == first[:2]
    sub.ack(d1.position, d2.position)
    cursor = store.get_subscription("a").cursor
    assert cursor == first[1]
    changed = store.create_subscription("a", namespaces=["user/*"], description="wider")
    assert changed.description == "wider" and changed.generation == 0
    assert store.get_subscription("a").cursor == cursor  # the change kept it
    bob = _write(store, 1, "user/bob")
    # the third alice note was delivered and not acknowledged: it comes again after its
    # timeout; everything after the cursor that the new filter selects comes once
    rest = [d.position for d in _drain(sub)]
    assert bob[0] in rest and first[0] not in rest and first[1] not in rest
    with pytest.raises(UnknownSubscription) as missing:
        store.get_subscription("ghost")
    assert missing.value.name == "ghost"


def test_deleting_a_subscription_ends_a_running_subscriber(store):
    store.create_subscription("s", start="beginning")
    sub = store.subscribe("s", heartbeat=0.1)
    seen: list[int] = []
    ended = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for d in sub:  # ends when the subscription goes
                if isinstance(d, Delivery):
                    seen.append(d.position)
                    sub.ack(d.position)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        ended.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    written = _write(store, 2)
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == written
    store.delete_subscription("s", reason="done with it")
    assert ended.wait(5) and not errors
    with pytest.raises(SubscriptionClosed):
        sub.next(timeout=0.5)
    with pytest.raises(UnknownSubscription):
        store.subscribe("s")
    assert store.subscriptions() == []
    store.flush()  # deliveries come as soon as events are decided; the audit table after
    audit = store.audit(namespace="memstream.governance").entries
    assert [e.type for e in audit] == ["subscription", "subscription_delete"]


def test_seek_replays_from_the_beginning_an_offset_or_skips_to_now(store):
    store.create_subscription("s", start="beginning")
    written = _write(store, 4)
    sub = store.subscribe("s", heartbeat=0.2)
    assert [d.position for d in _drain(sub)] == written
    assert [d.position for d in _drain(sub)] == []  # all acknowledged
    view = store.seek("s", "beginning")
    assert view.cursor == -1
    assert [d.position for d in _drain(sub)] == written
    store.seek("s", written[2])
    assert [d.position for d in _drain(sub)] == written[2:]
    store.seek("s", 0)
    store.seek("s", "now")
    assert _drain(sub) == []
    with pytest.raises(BadRequest):
        store.seek("s", "yesterday")


def test_parked_deliveries_are_listed_and_unparked(store):
    store.create_subscription("s", start="beginning", ack_timeout=0.2)
    a, b = _write(store, 2)
    sub = store.subscribe("s", heartbeat=0.1)
    first = sub.next(timeout=2)
    assert sub.nack(first.position, reason="cannot parse it") is True
    second = sub.next(timeout=2)
    sub.ack(second.position)
    [p] = store.parked("s")
    assert (p.position, p.reason, p.attempts) == (a, "cannot parse it", 1)
    assert store.get_subscription("s").parked == 1
    assert store.unpark("s", (b,)) == 0  # not parked
    assert store.unpark("s", [a]) == 1
    assert store.parked("s") == [] and store.get_subscription("s").parked == 0
    assert _drain(sub) == []  # a parked delivery never comes back by itself


def test_publications_are_seen_and_consumed_by_those_they_are_published_to(store_dir: Path):
    with MemoryStore.open(store_dir, actor="alice", durability="os") as owner:
        owner.add_principal("bob", kind="agent")
        owner.add_principal("carol")
        diet = owner.create("user/alice", "Alice eats kale", tags=["diet"])
        owner.create("user/alice", "Alice's bank pin", tags=["money"])
        view = owner.publish(
            "alice-diet", "user/alice", ["bob"], tag="diet", description="what Alice eats"
        )
        assert (view.namespace, view.tag, view.to, view.withdrawn) == (
            "user/alice", "diet", ["bob"], False,
        )  # fmt: skip
        assert [p.name for p in owner.publications()] == ["alice-diet"]
    with MemoryStore.open(store_dir, principal="carol", durability="os") as carol:
        assert carol.publications() == []  # not published to carol
        with pytest.raises(TermsViolated) as refused:
            carol.create_subscription("c", publication="alice-diet")
        assert refused.value.term == "to"
    with MemoryStore.open(store_dir, principal="bob", durability="os") as bob:
        assert [p.name for p in bob.publications()] == ["alice-diet"]
        assert bob.get_publication("alice-diet").description == "what Alice eats"
        bob.create_subscription("diet", publication="alice-diet", start="beginning")
        got = _drain(bob.subscribe("diet", heartbeat=0.2))
        mine = [d for d in got if d.event["namespace"] == "user/alice"]
        assert [d.position for d in mine] == [diet.offset]
        assert mine[0].provenance.publication == "alice-diet"
        with pytest.raises(Exception, match="admin"):
            bob.withdraw("alice-diet")
    with MemoryStore.open(store_dir, actor="alice", durability="os") as owner:
        owner.withdraw("alice-diet", reason="no longer shared")
        assert owner.get_publication("alice-diet").withdrawn is True
        with pytest.raises(UnknownSubscription):
            owner.get_publication("ghost")


def test_async_store_consumes_with_async_for_and_acks(store_dir: Path):
    async def main() -> None:
        async with await AsyncMemoryStore.open(store_dir, durability="os") as astore:
            await astore.create_subscription("s", namespaces=["user/alice"], start="beginning")
            written = [(await astore.create("user/alice", f"note {i}")).offset for i in range(5)]
            sub = astore.subscribe("s", heartbeat=0.2)
            assert not asyncio.iscoroutine(sub)
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticking = asyncio.create_task(ticker())
            got: list[int] = []
            beats = 0
            async for d in sub:
                if isinstance(d, Heartbeat):
                    beats += 1  # nothing more: the loop kept running while it waited
                    break
                got.append(d.position)
                sub.ack(d.position)
            ticking.cancel()
            assert got == written and beats == 1
            assert ticks >= 5  # the wait for the heartbeat (0.2 s) did not block the loop
            view = await astore.get_subscription("s")
            assert view.cursor == written[-1]
            # acknowledged: a new consumer starts after them
            again = astore.subscribe("s", heartbeat=0.2)
            assert isinstance(await again.next_async(timeout=0.3), Heartbeat)
            await astore.delete_subscription("s")
            with pytest.raises(SubscriptionClosed):
                await again.next_async(timeout=1)

    asyncio.run(main())


def test_a_delivery_comes_as_soon_as_its_event_is_decided_and_a_view_after_its_commit(
    store, hold_projection
):
    """Matching follows decisions, not the core projection's commits: with the projection
    held, a delivery still arrives (the store's tables do not show the event yet); a
    subscription that asks for the memory's view waits for the commit and carries it."""
    store.create_subscription("plain", namespaces=["user/alice"])
    store.create_subscription("viewed", namespaces=["user/alice"], view=True)
    plain, viewed = store.subscribe("plain"), store.subscribe("viewed")
    store.flush()
    held = hold_projection(store)
    out = store.create("user/alice", "likes oat milk")
    d = plain.next(timeout=5)
    assert isinstance(d, Delivery) and d.position == out.offset
    assert store.runtime.feed.committed < out.offset  # delivered before the commit
    assert d.event["payload"]["text"] == "likes oat milk"
    assert isinstance(viewed.next(timeout=0.3), Heartbeat)  # its view is not there yet
    assert viewed.consumer.in_flight() == []
    held.release()
    v = viewed.next(timeout=10)
    assert isinstance(v, Delivery) and v.position == out.offset and v.attempt == 1
    assert v.memory is not None and v.memory.text == "likes oat milk"
