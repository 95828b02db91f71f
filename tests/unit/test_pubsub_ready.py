"""Waiting on many subscriptions at once: a ready set marks the subscribers that may have
something to deliver, and only those."""

from __future__ import annotations

import time

from memstream import Delivery, Heartbeat, MemoryStore, ReadySet


def _take(sub) -> list[Delivery]:
    """Everything ready for ``sub`` now (not acknowledged)."""
    out = []
    while not isinstance(d := sub.next(timeout=0), Heartbeat):
        out.append(d)
    return out


def _settle(ready: ReadySet, subs: list, quiet: float = 0.3) -> None:
    """Take from the marked subscribers until none is marked for ``quiet`` seconds (they
    have read the log and attached to the hub by then)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        marked = ready.wait(quiet)
        if not marked and all(s.consumer.live for s in subs):
            return
        for sub in marked or subs:
            for d in _take(sub):
                sub.ack(d.position)
    raise AssertionError("the subscribers never settled")


def test_a_ready_set_marks_the_subscribers_with_matches_and_no_other(store: MemoryStore):
    store.create_subscription("alice", filter={"namespaces": ["user/alice"]})
    store.create_subscription("bob", filter={"namespaces": ["user/bob"]})
    alice, bob = store.subscribe("alice", heartbeat=1.0), store.subscribe("bob", heartbeat=1.0)
    ready = ReadySet()
    alice.watch(ready)
    bob.watch(ready)
    assert set(ready.wait(0)) == {alice, bob}  # marked once when watched
    _settle(ready, [alice, bob])

    written = [store.create("user/alice", f"note {i}").offset for i in range(5)]
    got: list[int] = []
    deadline = time.monotonic() + 30
    while len(got) < len(written) and time.monotonic() < deadline:
        marked = ready.wait(5.0)
        assert bob not in marked, "a subscriber with nothing to deliver was marked"
        for sub in marked:
            ds = _take(sub)
            got.extend(d.position for d in ds)
            if ds:
                sub.ack(*(d.position for d in ds))
    assert got == written
    assert ready.wait(0.2) == []  # acknowledging everything marks nothing more


def test_an_acknowledgement_marks_only_when_it_makes_room(store: MemoryStore):
    store.create_subscription("one", filter={"namespaces": ["user/alice"]}, max_in_flight=1)
    sub = store.subscribe("one", heartbeat=1.0)
    ready = ReadySet()
    sub.watch(ready)
    _settle(ready, [sub])
    written = [store.create("user/alice", f"note {i}").offset for i in range(2)]
    assert ready.wait(10.0) == [sub]
    deadline = time.monotonic() + 10
    while sub.consumer.examined() < written[1] and time.monotonic() < deadline:
        ready.wait(0.05)  # the second event may be pushed in a later batch
    [first] = _take(sub)  # one in flight at most
    assert first.position == written[0]
    ready.wait(0)
    sub.ack(first.position)  # room for the one waiting: marked
    assert ready.wait(0) == [sub]
    [second] = _take(sub)
    assert second.position == written[1]
    sub.ack(second.position)  # nothing waits: not marked
    assert ready.wait(0) == []


def test_unwatching_stops_the_marks_of_that_handle_only(store: MemoryStore):
    store.create_subscription("alice", filter={"namespaces": ["user/alice"]})
    sub, other = store.subscribe("alice", heartbeat=1.0), store.subscribe("alice", heartbeat=1.0)
    ready = ReadySet()
    sub.watch(ready)
    other.watch(ready)  # two handles of one subscription: they compete for its deliveries
    _settle(ready, [sub, other])
    sub.unwatch(ready)
    offset = store.create("user/alice", "note").offset
    assert ready.wait(10.0) == [other]
    assert [d.position for d in _take(other)] == [offset]
