"""Semantic subscriptions with the real embedding model: each memory text is embedded once
(for the index and every semantic subscription together), and a subscription receives the
memories whose meaning is close to its query."""

from __future__ import annotations

from pathlib import Path

from memstream import Delivery, Heartbeat, MemoryStore

DIET = [
    "Alice is vegetarian and avoids dairy",
    "Alice asked for a gluten-free breakfast",
    "Alice eats spinach salad for lunch every day",
]
OTHER = [
    "The quarterly budget review moved to Friday",
    "Bob's laptop needs a new battery",
    "Deploy the API gateway after the security patch",
]


def _received(sub) -> list[Delivery]:
    out = []
    while not isinstance(d := sub.next(timeout=3), Heartbeat):
        out.append(d)
        sub.ack(d.position)
    return out


def test_a_semantic_subscription_receives_what_means_something_close(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "s", semantic=True, durability="os") as store:
        svc, c = store.service, store.caller
        svc.set_subscription(
            c, "diet", filter={"semantic": {"query": "what Alice likes to eat", "threshold": 0.3}}
        )
        svc.set_subscription(c, "work", filter={"semantic": {"query": "laptop battery replacement",
                                                           "threshold": 0.4}})  # fmt: skip
        svc.set_subscription(c, "plain", filter={"namespaces": ["user/alice"]})
        subs = {n: svc.consume(c, n, heartbeat=1) for n in ("diet", "work", "plain")}
        for n in subs.values():  # live before the writes
            assert isinstance(n.next(timeout=0.2), Heartbeat)
        embedder = store.semantic.embedder
        before = embedder.texts_embedded
        written = {store.create("user/alice", t).memory_id: t for t in DIET + OTHER}
        diet = {d.event["memory_id"] for d in _received(subs["diet"])}
        work = {d.event["memory_id"] for d in _received(subs["work"])}
        plain = _received(subs["plain"])
        assert {written[m] for m in diet} == set(DIET)
        assert {written[m] for m in work} == {"Bob's laptop needs a new battery"}
        assert len(plain) == len(DIET + OTHER)
        store.flush()
        # six texts, each embedded once for the index and both semantic subscriptions
        assert embedder.texts_embedded - before == len(DIET + OTHER)
        # the query vector was recorded with the subscription (embedded once, at creation)
        rule = store.runtime.state.policy.subscriptions["diet"]
        assert rule.filter.semantic is not None and len(rule.filter.semantic.vector) == 384
