"""Subscriptions delivered from a real store: cursors, acknowledgements, redelivery, the
parked list, catch-up then live, restarts, tombstones, and checks made at delivery time."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import msgspec
import pytest

from memstream import Delivery, Heartbeat, MemoryStore, SubscriptionClosed
from memstream.governance.access_log import AccessQuery
from memstream.pubsub import consumer as consumer_module
from memstream.service import Caller


def _open(path: Path, **kw) -> MemoryStore:
    return MemoryStore.open(path, actor="tester", durability="os", **kw)


def _drain(sub, *, ack: bool = True, idle: float = 0.3) -> list[Delivery]:
    """Every delivery until one heartbeat interval passes with none (acked as taken)."""
    out = []
    while True:
        d = sub.next(timeout=idle)
        if isinstance(d, Heartbeat):
            return out
        out.append(d)
        if ack:
            sub.ack(d.position)


def _write(store: MemoryStore, n: int, namespace: str = "user/alice", **kw) -> list[int]:
    return [store.create(namespace, f"note {i}", **kw).offset for i in range(n)]


def test_catch_up_then_live_delivers_each_match_once_in_order(store_dir: Path, monkeypatch):
    # a small ready list: the live consumer overflows and falls back to reading the log
    monkeypatch.setattr(consumer_module, "READY_LIMIT", 7)
    monkeypatch.setattr(consumer_module, "SCAN_BATCH", 13)
    with _open(store_dir) as s:
        svc, c = s.service, s.caller
        before = _write(s, 40) + _write(s, 10, "user/bob")
        svc.set_subscription(c, "alice", filter={"namespaces": ["user/alice"]}, start="beginning")
        sub = svc.consume(c, "alice", heartbeat=0.2)
        got: list[int] = []
        done = threading.Event()
        written: list[int] = []

        def writer() -> None:
            for _ in range(6):
                written.extend(_write(s, 15))
                _write(s, 3, "user/bob")
                time.sleep(0.02)
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        while not (done.is_set() and len(got) == len(before) - 10 + len(written)):
            d = sub.next(timeout=0.5)
            if isinstance(d, Delivery):
                assert d.attempt == 1
                got.append(d.position)
                if random.random() < 0.3:
                    time.sleep(0.01)  # a slow consumer: the live list overflows
                sub.ack(d.position)
        t.join()
        expected = sorted([o for o in before if o not in before[40:]] + written)
        assert got == expected  # no gap, no duplicate, in log order
        assert isinstance(sub.next(timeout=0.3), Heartbeat)
        assert svc.subscription(c, "alice").cursor >= expected[-1]


def test_unacknowledged_deliveries_come_again_and_in_flight_is_bounded(store):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", start="beginning", ack_timeout=0.3, max_in_flight=2)
    offsets = _write(store, 3)
    sub = svc.consume(c, "s", heartbeat=0.1)
    a, b = sub.next(), sub.next()
    assert [a.position, b.position] == offsets[:2]
    # two in flight: the third waits (a heartbeat reports them)
    hb = sub.next(timeout=0.1)
    assert isinstance(hb, Heartbeat) and hb.in_flight == 2
    sub.ack(a.position)
    third = sub.next(timeout=1)
    assert third.position == offsets[2]
    # b was not acknowledged: delivered again after its timeout, attempt 2
    again = sub.next(timeout=2)
    assert again.position == b.position and again.attempt == 2
    sub.ack_upto(offsets[2])
    assert isinstance(sub.next(timeout=0.5), Heartbeat)


def test_a_rejected_delivery_is_parked_with_its_reason(store):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", start="beginning", ack_timeout=0.2)
    offsets = _write(store, 2)
    sub = svc.consume(c, "s", heartbeat=0.1)
    first = sub.next()
    assert sub.nack(first.position, reason="cannot parse") is True
    second = sub.next()
    assert second.position == offsets[1]
    assert sub.nack(second.position, park=False) is True  # once more, at once
    retry = sub.next(timeout=1)
    assert retry.position == offsets[1] and retry.attempt == 2
    sub.ack(retry.position)
    time.sleep(0.3)
    assert isinstance(sub.next(timeout=0.2), Heartbeat)  # the parked one never comes back
    parked = svc.parked(c, "s")
    assert [(p.position, p.reason) for p in parked] == [(offsets[0], "cannot parse")]
    assert svc.unpark(c, "s", [offsets[0]]) == 1 and svc.parked(c, "s") == []


def test_restarts_resume_from_the_cursor_and_never_redeliver_what_was_acked(store_dir: Path):
    rng = random.Random(7)
    acked: set[int] = set()
    seen: set[int] = set()
    expected: set[int] = set()
    for round_ in range(4):
        with _open(store_dir) as s:
            svc, c = s.service, s.caller
            if round_ == 0:
                svc.set_subscription(
                    c, "s", filter={"tags_any": ["keep"]}, start="beginning", ack_timeout=600
                )
            for _ in range(rng.randint(5, 25)):
                keep = rng.random() < 0.6
                o = s.create("user/alice", "x", tags=["keep"] if keep else []).offset
                if keep:
                    expected.add(o)
            sub = svc.consume(s.caller, "s", heartbeat=0.2)
            for _ in range(rng.randint(0, 30)):
                d = sub.next(timeout=0.2)
                if isinstance(d, Heartbeat):
                    break
                assert d.position not in acked, "an acknowledged delivery came again"
                seen.add(d.position)
                if rng.random() < 0.7:  # acknowledge out of order, or not at all
                    sub.ack(d.position)
                    acked.add(d.position)
    with _open(store_dir) as s:
        rest = _drain(s.service.consume(s.caller, "s", heartbeat=0.2))
        assert not {d.position for d in rest} & acked
        seen |= {d.position for d in rest}
    assert seen == expected  # nothing lost


def test_erased_content_never_goes_out_again(store):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", start="beginning", ack_timeout=0.3)
    m = store.create("user/alice", "Alice's secret diary entry", tags=["diary"])
    sub = svc.consume(c, "s", heartbeat=0.1)
    first = sub.next()
    assert first.kind == "event" and "secret" in first.event["payload"]["text"]
    store.erase(m.memory_id, reason="asked to forget")
    # the create, not acknowledged, comes again: as a tombstone now
    got = [sub.next(timeout=2), sub.next(timeout=2)]
    by_type = {d.event["type"]: d for d in got}
    assert by_type["create"].kind == "tombstone" and by_type["create"].attempt == 2
    assert by_type["erase"].kind == "tombstone"
    assert by_type["erase"].event["memory_id"] == m.memory_id
    assert by_type["erase"].event["actor"] == "tester"
    assert by_type["erase"].event["clear"]["reason"] == "asked to forget"
    for d in got:
        sub.ack(d.position)
    # a subscription replaying from the beginning: the same, never the text
    svc.set_subscription(c, "replay", start="beginning")
    replayed = _drain(svc.consume(c, "replay", heartbeat=0.2))
    assert [d.kind for d in replayed] == ["tombstone", "tombstone"]
    assert "secret" not in json.dumps(msgspec.to_builtins(got + replayed))


def test_a_subscriber_receives_only_what_its_principal_may_read_now(store):
    svc, owner = store.service, store.caller
    store.add_principal("bob", kind="agent")
    grant_id = store.grant("bob", ["read"], "user/bob")
    bob = Caller.principal_of("bob")
    svc.set_subscription(bob, "mine", filter={"namespaces": ["*"]})
    store.create("user/alice", "for alice only")
    seen_b = store.create("user/bob", "for bob").offset
    sub = svc.consume(bob, "mine", heartbeat=0.2)
    assert [d.position for d in _drain(sub)] == [seen_b]
    store.revoke(grant_id)
    store.create("user/bob", "after the revocation")
    assert _drain(sub) == []
    # another principal's subscription is not bob's to read or consume
    carol_store = Caller.principal_of("carol")
    store.add_principal("carol")
    with pytest.raises(Exception, match="belongs to bob"):
        svc.consume(carol_store, "mine")
    assert svc.subscriptions(owner)[0].owner == "bob"


def test_deleting_a_subscription_ends_its_consumers_and_its_cursor(store):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", start="beginning")
    _write(store, 2)
    sub = svc.consume(c, "s", heartbeat=0.1)
    assert len(_drain(sub)) == 2
    svc.delete_subscription(c, "s", reason="done")
    with pytest.raises(SubscriptionClosed):
        sub.next(timeout=1)
    assert list(sub) == []  # iteration just ends
    svc.set_subscription(c, "s", start="beginning")  # a new generation: a new cursor
    assert len(_drain(svc.consume(c, "s", heartbeat=0.1))) == 2


def test_changing_a_filter_keeps_the_cursor_and_seek_moves_it(store):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", filter={"namespaces": ["user/alice"]}, start="beginning")
    a = _write(store, 2)
    sub = svc.consume(c, "s", heartbeat=0.1)
    assert [d.position for d in _drain(sub)] == a
    svc.set_subscription(c, "s", filter={"namespaces": ["user/bob"]})
    _write(store, 1)
    b = _write(store, 1, "user/bob")
    assert [d.position for d in _drain(sub)] == b
    view = svc.seek(c, "s", a[0])
    assert view.cursor == a[0] - 1
    assert [d.position for d in _drain(sub)] == b  # from a[0] on, under the new filter


def test_start_from_an_offset_a_time_and_now(store):
    svc, c = store.service, store.caller
    early = _write(store, 3)
    time.sleep(0.01)
    from datetime import UTC, datetime

    mark = datetime.now(UTC)
    late = _write(store, 2)
    svc.set_subscription(c, "off", start=early[1])
    svc.set_subscription(c, "time", start=mark.isoformat())
    svc.set_subscription(c, "now")
    newest = _write(store, 1)
    assert [d.position for d in _drain(svc.consume(c, "off"))] == [*early[1:], *late, *newest]
    assert [d.position for d in _drain(svc.consume(c, "time"))] == [*late, *newest]
    assert [d.position for d in _drain(svc.consume(c, "now"))] == newest


def test_subscriptions_are_events_that_replay(store, tmp_path: Path):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", filter={"tags_all": ["a", "b"]}, description="both")
    svc.set_subscription(c, "gone")
    svc.delete_subscription(c, "gone")
    store.flush()
    types = [e.type for e in store.audit(namespace="memstream.governance").entries]
    assert types == ["subscription", "subscription", "subscription_delete"]
    with store.replay(tmp_path / "copy") as r:
        rules = r.runtime.state.policy.subscriptions
        assert list(rules) == ["s"] and rules["s"].filter.tags_all == ["a", "b"]


def test_every_delivery_is_in_the_access_log(store):
    svc, c = store.service, store.caller
    svc.set_subscription(c, "s", start="beginning")
    m = store.create("user/alice", "hello")
    d = svc.consume(c, "s").next()
    store.accesses.flush()
    page = store.accesses.query(AccessQuery(action="delivery"))
    [rec] = page.records
    assert rec.objects == [m.memory_id] and rec.detail["position"] == d.position


def test_a_publication_delivers_under_its_terms_with_provenance(store):
    from memstream import TermsViolated

    svc = store.service
    store.add_principal("bob", kind="agent", groups=["friends"])
    store.add_principal("carol")
    bob, carol = Caller.principal_of("bob"), Caller.principal_of("carol")
    view = svc.publish(
        store.caller, "alice-diet", "user/alice", ["group:friends"], tag="diet",
        max_deliveries=2, period_seconds=3600, redact=True, description="what Alice eats",
    )  # fmt: skip
    assert view.to == ["group:friends"] and view.redact
    # carol is not among those it is published to
    with pytest.raises(TermsViolated) as refused:
        svc.set_subscription(carol, "c", publication="alice-diet")
    assert refused.value.term == "to"
    svc.set_subscription(bob, "diet", publication="alice-diet")
    first = store.create("user/alice", "Alice eats kale, write to alice@example.com", tags=["diet"])
    store.create("user/alice", "Alice's bank pin", tags=["money"])  # not published
    store.create("user/bob", "bob's own note", tags=["diet"])  # another namespace
    second = store.create("user/alice", "Alice avoids dairy", tags=["diet"])
    store.create("user/alice", "Alice likes figs", tags=["diet"])
    sub = svc.consume(bob, "diet", heartbeat=0.2)
    d1, d2 = sub.next(), sub.next()
    assert [d1.position, d2.position] == [first.offset, second.offset]
    assert d1.provenance.publication == "alice-diet"
    assert d1.provenance.namespace == "user/alice" and d1.provenance.memory_id == first.memory_id
    assert d1.provenance.version == 1 and d1.provenance.store == store.runtime.log.log_id
    text = d1.event["payload"]["text"]
    assert "alice@example.com" not in text and "kale" in text  # redacted, as the terms say
    sub.ack(d1.position, d2.position)
    # two deliveries per hour: the third waits, with a clear error
    with pytest.raises(TermsViolated) as used_up:
        sub.next(timeout=0.5)
    assert used_up.value.term == "max_deliveries" and 0 < used_up.value.retry_after <= 3600
    # bob has no read grant on user/alice: only the publication lets these through
    with pytest.raises(Exception, match="read"):
        svc.get(bob, first.memory_id)


def test_revising_and_withdrawing_a_publication_reach_its_subscribers(store):
    from memstream import TermsViolated

    svc = store.service
    store.add_principal("bob")
    bob = Caller.principal_of("bob")
    m = store.create("user/alice", "Alice's recipe", tags=["food"])
    svc.publish(store.caller, "recipe", "user/alice", ["bob"], memory_id=m.memory_id)
    svc.set_subscription(bob, "r", publication="recipe", start="beginning")
    sub = svc.consume(bob, "r", heartbeat=0.2)
    got = _drain(sub)
    assert [(d.event["type"], d.event["memory_id"]) for d in got] == [
        ("create", m.memory_id), ("publication", "recipe"),
    ]  # fmt: skip
    svc.publish(store.caller, "recipe", "user/alice", ["bob"], memory_id=m.memory_id,
                description="revised terms")  # fmt: skip
    store.revise(m.memory_id, "Alice's recipe, with less salt")
    got = _drain(sub)
    assert [d.event["type"] for d in got] == ["publication", "revise"]
    assert got[0].event["payload"]["description"] == "revised terms"
    svc.withdraw(store.caller, "recipe", reason="no longer shared")
    store.revise(m.memory_id, "Alice's recipe, v3")
    got = _drain(sub)
    assert [d.event["type"] for d in got] == ["publication_withdraw"]
    with pytest.raises(TermsViolated) as withdrawn:
        svc.set_subscription(bob, "r2", publication="recipe")
    assert withdrawn.value.term == "withdrawn"
    # an expired publication refuses new subscribers
    svc.publish(store.caller, "old", "user/alice", ["bob"], expires_at="2020-01-01T00:00:00Z")
    with pytest.raises(TermsViolated) as expired:
        svc.set_subscription(bob, "o", publication="old")
    assert expired.value.term == "expires_at"
    # only an admin of the namespace publishes
    with pytest.raises(Exception, match="admin"):
        svc.publish(bob, "mine", "user/alice", ["bob"])


def test_a_dead_consumer_holds_bounded_memory_and_slows_no_one(store, monkeypatch):
    monkeypatch.setattr(consumer_module, "READY_LIMIT", 50)
    svc, c = store.service, store.caller
    svc.set_subscription(c, "dead")
    svc.set_subscription(c, "alive")
    dead = svc.consume(c, "dead", heartbeat=0.1)
    alive = svc.consume(c, "alive", heartbeat=0.1)
    for sub in (dead, alive):
        assert isinstance(sub.next(timeout=0.2), Heartbeat)  # both live now
    hub = store.hub
    offsets = []
    for _ in range(10):
        outs = store.append(
            [store.event("create", "user/alice", f"m{_}-{i}", {"text": f"n{i}"}) for i in range(40)]
        )
        offsets += [o.offset for o in outs]
        got = _drain(alive, idle=0.2)  # the live one keeps up, batch after batch
        assert [d.position for d in got] == offsets[-40:]
    stats = hub.existing("dead").stats()
    assert stats["ready"] <= 50 and stats["live"] is False  # it fell back to the log
    # when it comes back, it reads the rest from the log: nothing lost, in order
    assert [d.position for d in _drain(dead)] == offsets


def test_closing_right_after_a_deletion_forgets_its_cursor(store_dir: Path):
    with _open(store_dir) as s:
        s.service.set_subscription(s.caller, "s", start="beginning")
        _write(s, 3)
        assert len(_drain(s.service.consume(s.caller, "s"))) == 3
        s.service.delete_subscription(s.caller, "s")
    # closed at once: the lanes caught up with the deletion while the cursors were open
    with _open(store_dir) as s:
        assert s.hub.cursors.position("s", 0) is None
