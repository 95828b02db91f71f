"""TTL and retention as events: the scheduler against real stores and a fake clock.

The clock drives everything that reads the time: the log's ``recorded_at`` (so a memory is
created, changed and expired at fake times), the usage indicators (last access) and the
scheduler. The year-long test moves it through a year of mixed TTLs, expiry times, idle
policies and retention erases, and after every pass compares the store with a small
reference computation of the rules in docs/governance.md.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import memstream.streams.log as log_module
import pytest
from fastapi.testclient import TestClient
from memstream.projections.processor import ProcessorContext

from memstream import MemoryStore
from memstream.errors import Unsupported
from memstream.governance.retention import (
    SCHEDULER,
    RetentionPolicy,
    RetentionScheduler,
    retention_event_id,
)
from memstream.http import create_app

STATES = ["active", "activated", "archived", "expired", "merged", "erased"]
START = datetime(2031, 1, 1, tzinfo=UTC)
S, DAY = 1_000_000, 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FakeClock:
    """The time every part of the store reads, in microseconds; it only moves forward."""

    def __init__(self, start: datetime) -> None:
        self.us = (start - _EPOCH) // timedelta(microseconds=1)

    def now(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.us)

    def seconds(self) -> float:
        return self.us / S

    def advance(self, us: int) -> None:
        self.us += us


class _FakeTime:
    """The ``time`` module as the log sees it: the fake clock's time, the rest real."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time_ns(self) -> int:
        return self.clock.us * 1000

    def time(self) -> float:
        return self.clock.seconds()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock(START)
    monkeypatch.setattr(log_module, "time", _FakeTime(c))
    return c


def open_store(path: Path, clock: FakeClock, policies: dict[str, RetentionPolicy] | None = None,
               **kw: Any) -> MemoryStore:  # fmt: skip
    scheduler = RetentionScheduler(
        retention_for=(policies or {}).get, now=clock.now, interval=kw.pop("interval", 0)
    )
    store = MemoryStore.open(path, durability="os", actor="tester", retention=scheduler, **kw)
    assert store.usage_tracker is not None
    store.usage_tracker.clock = clock.seconds
    return store


def states(store: MemoryStore) -> dict[str, tuple[str, bool]]:
    """memory id -> (state, frozen), from the projection (a read that records no access)."""
    store.flush()
    page = store.list_memories(states=STATES, limit=10_000)
    assert page.next_after is None
    return {m.memory_id: (m.state, m.frozen) for m in page.memories}


def scheduler_events(store: MemoryStore) -> list[Any]:
    store.flush()
    return store.audit(actor=SCHEDULER, limit=10_000).entries


# -- the reference -----------------------------------------------------------------------------


@dataclass
class Ref:
    """A memory as the reference computation sees it."""

    ns: str
    created: int
    ttl: int | None
    expires_at: int | None
    retention: int | None
    state: str = "active"
    frozen: bool = False
    last_change: int = 0
    last_access: int = 0
    expired_at: int | None = None
    #: what the scheduler did to it: [(operation, rule)]
    done: list[tuple[str, str]] = field(default_factory=list)


def days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def reference_pass(refs: dict[str, Ref], policies: dict[str, RetentionPolicy], now: int) -> set:
    """Apply every rule due at ``now``; the (memory, operation, rule) applied."""
    applied = set()
    for mid, r in refs.items():
        if r.frozen:
            continue
        p = policies.get(r.ns)
        rules: list[tuple[int, int, str]] = []
        if r.state in ("active", "archived"):
            if r.ttl is not None:
                rules.append((r.created + r.ttl * S, 0, "ttl"))
            if r.expires_at is not None:
                rules.append((r.expires_at, 1, "expiry time"))
            if p is not None and p.expire_after_idle_days:
                n = p.expire_after_idle_days
                rules.append((max(r.last_change, r.last_access) + n * DAY, 2, f"idle {days(n)}"))
            op = "expire"
        elif r.state == "expired":
            assert r.expired_at is not None
            if r.retention is not None:
                rules.append(
                    (r.expired_at + r.retention * DAY, 0, f"retention {days(r.retention)} after expiry")
                )  # fmt: skip
            if p is not None and p.erase_after_expired_days:
                n = p.erase_after_expired_days
                rules.append(
                    (r.expired_at + n * DAY, 1, f"namespace retention {days(n)} after expiry")
                )
            op = "erase"
        if not rules or min(rules)[0] > now:
            continue
        rule = min(rules)[2]
        r.done.append((op, rule))
        applied.add((mid, op, rule))
        if op == "expire":
            r.state, r.expired_at, r.last_change = "expired", now, now
        else:
            r.state = "erased"
    return applied


# -- a year ------------------------------------------------------------------------------------

POLICIES = {
    "team/idle": RetentionPolicy(expire_after_idle_days=30),
    "team/keep": RetentionPolicy(erase_after_expired_days=7),
    "team/both": RetentionPolicy(expire_after_idle_days=45, erase_after_expired_days=14),
}
NAMESPACES = ["user/plain", "user/other", *POLICIES]


def _create(store: MemoryStore, rng: random.Random, clock: FakeClock, i: int) -> tuple[str, Ref]:
    ns = rng.choice(NAMESPACES)
    kind = rng.random()
    ttl = rng.randint(3_600, 120 * 86_400) if kind < 0.45 else None
    expires = None
    if 0.3 < kind < 0.7:
        expires = clock.us + rng.randint(-2 * DAY, 200 * DAY)  # a few already past
    retention = rng.randint(1, 30) if rng.random() < 0.5 else None
    mid = f"m{i:04d}"
    store.create(
        ns, f"fact {i}: {rng.random():.8f}", memory_id=mid, ttl_seconds=ttl,
        retention_days=retention,
        expires_at=None if expires is None else _EPOCH + timedelta(microseconds=expires),
    )  # fmt: skip
    r = Ref(ns, clock.us, ttl, expires, retention, last_change=clock.us)
    return mid, r


def _user_actions(store: MemoryStore, rng: random.Random, clock: FakeClock,
                  refs: dict[str, Ref]) -> None:  # fmt: skip
    """Reads, revisions, archives, holds and manual expiries, as users do them."""
    now = clock.us
    live = [m for m, r in refs.items() if r.state in ("active", "archived") and not r.frozen]
    for mid in rng.sample(live, min(len(live), 6)):
        store.get(mid)  # an access: the idle rule counts from it
        refs[mid].last_access = now
    for mid in rng.sample(live, min(len(live), 3)):
        r = refs[mid]
        roll = rng.random()
        if r.state == "active" and roll < 0.5:
            store.revise(mid, f"revised at {now}")
        elif r.state == "active" and roll < 0.65:
            store.archive(mid)
            r.state = "archived"
        elif r.state == "archived" and roll < 0.6:
            store.restore(mid)
            r.state = "active"
        elif roll < 0.75:
            store.expire(mid, reason="no longer true")  # by hand: retention still applies
            r.state, r.expired_at = "expired", now
        else:
            continue
        r.last_change = now
    holdable = [m for m, r in refs.items() if r.state in ("active", "archived", "expired")]
    for mid in rng.sample(holdable, min(len(holdable), 1)):
        r = refs[mid]
        if rng.random() < 0.5:
            if r.frozen:
                store.unfreeze(mid, reason="hold lifted")
            else:
                store.freeze(mid, reason="legal hold")
            r.frozen = not r.frozen
            r.last_change = now


@pytest.mark.slow  # ~25 s: two projection round trips per pass, 120 passes
def test_a_year_of_ttls_and_retention_matches_the_reference(tmp_path: Path, clock: FakeClock):
    rng = random.Random(20310101)
    refs: dict[str, Ref] = {}
    path = tmp_path / "store"
    store = open_store(path, clock, POLICIES)
    end = clock.us + 365 * DAY
    restarted = second_checks = passes = 0
    try:
        step = 0
        while clock.us < end:
            step += 1
            clock.advance(rng.randint(DAY, 5 * DAY))
            if len(refs) < 300 and clock.us < end - 60 * DAY:
                for _ in range(rng.randint(1, 6)):
                    mid, r = _create(store, rng, clock, len(refs))
                    refs[mid] = r
            _user_actions(store, rng, clock, refs)
            if step == 70:  # a restart: a new scheduler builds its queue from the projection
                store.close()
                store = open_store(path, clock, POLICIES)
                restarted += 1
            second = None
            if step % 15 == 0:
                # a second scheduler, with the same view of the store as the first
                store.flush()
                second = RetentionScheduler(retention_for=POLICIES.get, now=clock.now, interval=0)
                second.start(ProcessorContext(store.runtime.duck, store.runtime.projected_offset))
                store._attach(second)
                second._current = None  # as if it had crashed before seeing the first's events
            expected = reference_pass(refs, POLICIES, clock.us)
            report = store.run_retention()
            passes += 1
            assert {d.status for d in report.due} <= {"accepted"}, report
            got = {(d.memory_id, d.operation, d.rule) for d in report.due}
            assert got == expected, (step, got ^ expected)
            assert states(store) == {m: (r.state, r.frozen) for m, r in refs.items()}, step
            if second is not None:
                head = store.head
                again = second.run(clock.now())
                assert sorted(d.event_id for d in again.due) == sorted(
                    d.event_id for d in report.due
                )
                assert {d.status for d in again.due} <= {"duplicate"}
                assert store.head == head  # nothing appended a second time
                second.close()
                second_checks += 1
        # the restarted scheduler, run again at the same time, finds nothing due
        assert store.run_retention().due == []

        done = [(m, op, rule) for m, r in refs.items() for op, rule in r.done]
        kinds = {op for _, op, _ in done} | {rule.split(" ")[0] for _, _, rule in done}
        assert {"expire", "erase", "ttl", "expiry", "idle", "retention", "namespace"} <= kinds
        assert len(refs) >= 250 and restarted == 1 and second_checks >= 5 and passes > 100
        assert sum(r.frozen for r in refs.values()) > 0
        # every decision is one event in the audit, by the scheduler, and none was refused
        entries = scheduler_events(store)
        assert len(entries) == len(done)
        assert all(e.status == "accepted" for e in entries)
        assert sorted((e.memory_id, e.type) for e in entries) == sorted(
            (m, op) for m, op, _ in done
        )
        for e in entries:  # reasons stay readable where the memory was not erased
            if e.why is not None:
                assert (e.memory_id, e.type, e.why) in set(done)
        # an erase by retention leaves the memory's text unreadable, everywhere
        erased = [m for m, r in refs.items() if r.state == "erased"]
        assert len(erased) > 20
        for mid in erased[:10]:
            assert store.get(mid).text is None
            assert all(v.text is None for v in store.history(mid))
        # a replay reaches the same states from the log alone, without any scheduler
        final = states(store)
        with store.replay(tmp_path / "replayed") as replayed:
            assert replayed.retention_scheduler is None
            assert states(replayed) == final
    finally:
        store.close()
    # and so does a rebuild of the projections, with no scheduler and the clock far ahead
    clock.advance(3_650 * DAY)
    for p in (path / "state").glob("core.duckdb*"):
        p.unlink()
    with MemoryStore.open(path, retention=False) as rebuilt:
        assert states(rebuilt) == final
        # the log holds the erased memories' payloads, sealed under destroyed keys
        payloads = {
            logged.event.memory_id: logged.event.payload
            for batch in rebuilt.follow(0, idle=0.2)
            for logged, _ in batch
            if logged.event.type == "create"
        }
    assert all(payloads[m] is None for m in erased)
    assert all(payloads[m] is not None for m, r in refs.items() if r.state != "erased")


# -- rules one at a time -----------------------------------------------------------------------


def test_a_frozen_memory_is_not_expired_and_is_after_unfreeze(tmp_path: Path, clock: FakeClock):
    with open_store(tmp_path / "s", clock) as store:
        created = clock.us
        store.create("user/a", "held", memory_id="held", ttl_seconds=86_400, retention_days=2)
        store.freeze("held", reason="legal hold")
        clock.advance(5 * DAY)
        assert store.run_retention().due == []
        assert states(store)["held"] == ("active", True)
        store.unfreeze("held", reason="hold lifted")
        clock.advance(S)
        (due,) = store.run_retention().due
        assert (due.operation, due.rule, due.status) == ("expire", "ttl", "accepted")
        assert due.due_at == _EPOCH + timedelta(microseconds=created + DAY)
        expired_at = clock.us
        # an expired memory under a hold keeps it past its retention, then goes
        store.flush()
        store.freeze("held", reason="second hold")
        clock.advance(10 * DAY)
        assert store.run_retention().due == []
        assert states(store)["held"] == ("expired", True)
        store.unfreeze("held")
        (due,) = store.run_retention().due
        assert (due.operation, due.rule) == ("erase", "retention 2 days after expiry")
        assert due.due_at == _EPOCH + timedelta(microseconds=expired_at + 2 * DAY)
        assert states(store)["held"] == ("erased", False)


def test_a_rejected_emission_is_not_retried(tmp_path: Path, clock: FakeClock):
    """A user's change races the scheduler's decision: the emission is refused once, and the
    scheduler decides again on the new state (not in a loop on the old one)."""
    with open_store(tmp_path / "s", clock) as store:
        store.create("user/a", "soon gone", memory_id="m", ttl_seconds=60)
        clock.advance(120 * S)
        store.flush()
        scheduler = store.retention_scheduler
        assert scheduler is not None
        # the live state says revision 1 when the scheduler checks; a revise lands between
        # that check and the append
        live = store.runtime.state.memories.get
        raced = {"done": False}

        def current(memory_id: str):
            m = live(memory_id)
            if not raced["done"]:
                raced["done"] = True
                store.revise("m", "changed meanwhile")
            return m

        scheduler._current = current
        (due,) = store.run_retention().due
        assert (due.status, due.code, due.revision) == ("rejected", "version_conflict", 1)
        scheduler._current = live
        assert [d.status for d in store.run_retention().due] == ["accepted"]
        assert store.run_retention().due == []
        entries = scheduler_events(store)
        assert [(e.status, e.expected_version) for e in entries] == [
            ("rejected", 1),
            ("accepted", 2),
        ]


def test_expiry_time_and_the_earlier_rule_wins(tmp_path: Path, clock: FakeClock):
    with open_store(tmp_path / "s", clock) as store:
        at = clock.now() + timedelta(hours=5)
        store.create("user/a", "both", memory_id="both", ttl_seconds=10 * 3_600, expires_at=at)
        store.create("user/a", "ttl first", memory_id="ttl", ttl_seconds=3_600, expires_at=at)
        store.create("user/a", "past", memory_id="past", expires_at=START - timedelta(days=3))
        store.create("user/a", "none", memory_id="none")
        got = store.get("both", min_offset=store.head)
        assert got is not None and got.expires_at == at and got.ttl_seconds == 36_000
        dry = store.run_retention(dry_run=True)
        assert [(d.memory_id, d.rule, d.status) for d in dry.due] == [("past", "expiry time", None)]
        assert states(store)["past"] == ("active", False)  # a dry run appends nothing
        clock.advance(6 * 3_600 * S)
        report = store.run_retention()
        assert sorted((d.memory_id, d.rule) for d in report.due) == [
            ("both", "expiry time"), ("past", "expiry time"), ("ttl", "ttl"),
        ]  # fmt: skip
        assert states(store)["none"] == ("active", False)


def test_a_revise_does_not_reset_the_ttl_but_moves_the_idle_rule(tmp_path: Path, clock: FakeClock):
    policies = {"team/x": RetentionPolicy(expire_after_idle_days=10)}
    with open_store(tmp_path / "s", clock, policies) as store:
        store.create("user/a", "v1", memory_id="ttl", ttl_seconds=5 * 86_400)
        store.create("team/x", "v1", memory_id="idle")
        clock.advance(4 * DAY)
        store.revise("ttl", "v2")
        store.revise("idle", "v2")
        clock.advance(2 * DAY)
        assert [(d.memory_id, d.rule) for d in store.run_retention().due] == [("ttl", "ttl")]
        clock.advance(7 * DAY)  # 9 days after the revise, 13 after creation
        store.get("idle")  # an access moves it on too
        clock.advance(9 * DAY)
        assert store.run_retention().due == []
        clock.advance(DAY + S)
        (due,) = store.run_retention().due
        assert (due.memory_id, due.rule) == ("idle", "idle 10 days")


def test_the_event_is_deterministic_and_the_log_keeps_one(tmp_path: Path, clock: FakeClock):
    eid = retention_event_id("m", 3, "ttl")
    assert eid == retention_event_id("m", 3, "ttl") and uuid.UUID(eid).version == 5
    assert len({eid, retention_event_id("m", 4, "ttl"), retention_event_id("m", 3, "x")}) == 3
    with open_store(tmp_path / "s", clock) as store:
        store.create("user/a", "x", memory_id="m", ttl_seconds=1, subject="person/ann")
        clock.advance(2 * S)
        dry = store.run_retention(dry_run=True).due
        (due,) = store.run_retention().due
        assert due.event_id == dry[0].event_id == retention_event_id("m", 1, "ttl")
        (entry,) = scheduler_events(store)
        assert (entry.event_id, entry.actor, entry.expected_version) == (due.event_id, SCHEDULER, 1)
        assert entry.subject == "person/ann" and entry.why == "ttl"
        assert entry.context["purpose"] == "retention"


def test_background_passes_run_at_the_interval(tmp_path: Path, clock: FakeClock):
    with open_store(tmp_path / "s", clock, interval=0.05) as store:
        store.create("user/a", "x", memory_id="m", ttl_seconds=60)
        clock.advance(61 * S)
        deadline = time.monotonic() + 20
        while store.runtime.state.memories["m"].state != "expired":
            assert time.monotonic() < deadline, "the background pass did not expire it"
            time.sleep(0.02)
        assert [e.actor for e in scheduler_events(store)] == [SCHEDULER]


def test_settings_and_read_only_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MEMSTREAM_RETENTION_INTERVAL", "0.5")
    with MemoryStore.open(tmp_path / "a", durability="os") as store:
        assert store.retention_scheduler is not None
        assert store.retention_scheduler.interval == 0.5
        store.create("user/a", "x", memory_id="m", ttl_seconds=3_600)
        report = store.run_retention(now=datetime.now(UTC) + timedelta(days=1), dry_run=True)
        assert [d.memory_id for d in report.due] == ["m"]
        copy = store.backup(tmp_path / "copy")
    monkeypatch.setenv("MEMSTREAM_RETENTION", "0")
    with MemoryStore.open(tmp_path / "b", durability="os") as store:
        assert store.retention_scheduler is None
        with pytest.raises(Unsupported, match="retention=True"):
            store.run_retention()
    monkeypatch.delenv("MEMSTREAM_RETENTION")
    with MemoryStore.open(copy, read_only=True) as inspected:
        later = datetime.now(UTC) + timedelta(days=1)
        assert len(inspected.run_retention(now=later, dry_run=True).due) == 1
        from memstream.errors import StoreReadOnly

        with pytest.raises(StoreReadOnly):
            inspected.run_retention(now=later)


def test_bad_input_names_the_field(tmp_path: Path):
    with pytest.raises(ValueError, match="expire_after_idle_days"):
        RetentionPolicy(expire_after_idle_days=0)
    with pytest.raises(ValueError, match="erase_after_expired_days"):
        RetentionPolicy(erase_after_expired_days=True)  # type: ignore[arg-type]
    with MemoryStore.open(tmp_path / "s", durability="os") as store:
        from memstream.errors import BadRequest

        with pytest.raises(BadRequest, match="now"):
            store.run_retention(now=datetime(2031, 1, 1))
        with pytest.raises(BadRequest, match="dry_run"):
            store.run_retention(dry_run="yes")  # type: ignore[arg-type]
        client = TestClient(create_app(store))
        r = client.post("/v1/retention/run", json={"now": "tomorrow"})
        assert r.status_code == 400 and r.json()["field"] == "body.now"
        r = client.post("/v1/retention/run", json={"dry_run": True, "when": 1})
        assert r.status_code == 400
        store.create("user/a", "x", memory_id="m", expires_at="2020-01-01T00:00:00Z")
        r = client.post("/v1/retention/run", json={"dry_run": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["dry_run"] is True and [d["rule"] for d in body["due"]] == ["expiry time"]
        r = client.post("/v1/retention/run", json={})
        assert r.json()["accepted"] == 1 and r.json()["due"][0]["status"] == "accepted"


def test_a_policy_that_fails_to_load_spares_the_others(tmp_path: Path, clock: FakeClock):
    def policies(namespace: str) -> RetentionPolicy | None:
        if namespace == "broken/ns":
            raise RuntimeError("policy store unavailable")
        return RetentionPolicy(expire_after_idle_days=1)

    scheduler = RetentionScheduler(retention_for=policies, now=clock.now, interval=0)
    with MemoryStore.open(tmp_path / "s", durability="os", retention=scheduler) as store:
        store.create("broken/ns", "x", memory_id="a")
        store.create("fine/ns", "y", memory_id="b")
        clock.advance(2 * DAY)
        assert [d.memory_id for d in store.run_retention().due] == ["b"]
