"""Access control against a reference model: random principals, groups, grants,
revocations and calls, and not one disagreement.

A hypothesis state machine drives one real embedded store (real log, DuckDB, search
indexes). The store's owner writes memories and changes the rules; random principals, each
acting through ``MemoryStore(principal=...)`` (the same service as HTTP), get, read
histories, list, audit, write and search, now and ``as_of`` past offsets, with namespace,
tag and archived filters. After every call the answer is compared with a few lines of
plain Python that say what the policy allows: a refusal where the model allows, an answer
where it refuses, or a search hit the caller may not read (or a readable match missing) is
a disagreement. 30 runs of up to 500 steps: over 10,000 operations (counted, and
checked at the end).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from memstream.schemas.events import Context

from memstream import MemoryStore
from memstream.errors import Forbidden
from memstream.queries import AuditQuery, ListQuery, SearchQuery
from memstream.service import Caller

pytestmark = pytest.mark.slow

NAMESPACES = ["user/a", "user/b", "team/x", "team/x/sub", "team/y", "clinic/d"]
OBJECTS = [*NAMESPACES, "user/*", "team/*", "team/x/*", "*"]
PRINCIPALS = ["p0", "p1", "p2", "p3"]
GROUPS = ["g0", "g1"]
MODES = ["read", "write", "audit", "admin"]
TAGS = ["t0", "t1"]
APPS = [None, "app0"]
DIM = 384
#: what the runs did, checked at the end (the proof needs 10,000 checked operations)
STATS = {"runs": 0, "operations": 0, "hits": 0, "refusals": 0}


def _vector(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i % DIM] = 1.0
    v[(i * 7 + 3) % DIM] = 0.5
    return v


# -- the reference model ----------------------------------------------------------------------


@dataclass
class Grant:
    to: str
    obj: str
    modes: tuple[str, ...]
    app: str | None


@dataclass
class Model:
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    grants: dict[str, Grant] = field(default_factory=dict)
    #: memory id -> (namespace, state, tags)
    memories: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)

    def selects(self, obj: str, ns: str | None, mid: str | None) -> bool:
        if obj == "*":
            return ns is not None or mid is not None
        if obj.startswith("memory:"):
            return obj == f"memory:{mid}"
        if ns is None:
            return False
        if obj.endswith("/*"):
            return ns == obj[:-2] or ns.startswith(obj[:-2] + "/")
        return ns == obj

    def may(self, p: str, mode: str, ns: str | None, mid: str | None, app: str | None) -> bool:
        if p not in self.groups or p in self.disabled:
            return False
        names = {p, "*", *(f"group:{g}" for g in self.groups[p])}
        for g in self.grants.values():
            if g.to not in names or (mode not in g.modes and "admin" not in g.modes):
                continue
            if g.app is not None and g.app != app:
                continue
            if ns is None and mid is None:
                if g.obj == "*":
                    return True
            elif self.selects(g.obj, ns, mid):
                return True
        return False

    def readable(self, p: str, mid: str, app: str | None) -> bool:
        return self.may(p, "read", self.memories[mid][0], mid, app)

    def one_by_one(self, p: str, app: str | None) -> bool:
        """Whether ``p`` holds read on any single memory (grants on ``memory:<id>``)."""
        return any(
            g.obj.startswith("memory:") and self.may(p, "read", None, g.obj[7:], app)
            for g in self.grants.values()
        )


class GovernanceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.model = Model()
        self.counter = itertools.count()
        self.snapshots: list[tuple[int, dict]] = []  # (offset, memories then)
        self.ops = 0

    @initialize()
    def open(self) -> None:
        root = Path(self.dir.name) / "store"
        self.owner = MemoryStore.open(root, semantic=True, durability="os")
        self.service = self.owner.service
        for p in PRINCIPALS:
            self.owner.add_principal(p)
            self.model.groups[p] = ()

    def teardown(self) -> None:
        STATS["runs"] += 1
        STATS["operations"] += self.ops
        owner = getattr(self, "owner", None)
        if owner is not None:
            owner.close()
        self.dir.cleanup()

    def _snapshot(self) -> None:
        self.snapshots.append((self.owner.head, dict(self.model.memories)))

    @staticmethod
    def _caller(p: str, app: str | None) -> Caller:
        """``p`` calling in app ``app``, checked as every HTTP caller is."""
        return Caller(principal=p, context=Context(app=app), enforced=True)

    def _expect(self, allowed: bool, call) -> object:
        self.ops += 1
        try:
            got = call()
        except Forbidden:
            assert not allowed, "refused, but the model allows it"
            STATS["refusals"] += 1
            return None
        assert allowed, "answered, but the model refuses it"
        return got

    # -- the owner changes the store and the rules ------------------------------------------

    @rule(ns=st.sampled_from(NAMESPACES), tags=st.lists(st.sampled_from(TAGS), max_size=2))
    def create(self, ns: str, tags: list[str]) -> None:
        self.ops += 1
        i = next(self.counter)
        o = self.owner.create(ns, f"memory {i} about tea", tags=tags, vector=_vector(i))
        self.model.memories[o.memory_id] = (ns, "active", tuple(sorted(set(tags))))
        self._snapshot()

    @precondition(lambda self: self.model.memories)
    @rule(data=st.data())
    def archive_or_restore(self, data) -> None:
        self.ops += 1
        mid = data.draw(st.sampled_from(sorted(self.model.memories)))
        ns, state, tags = self.model.memories[mid]
        if state == "active":
            self.owner.archive(mid)
            self.model.memories[mid] = (ns, "archived", tags)
        else:
            self.owner.restore(mid)
            self.model.memories[mid] = (ns, "active", tags)
        self._snapshot()

    @rule(
        to=st.sampled_from([*PRINCIPALS, *(f"group:{g}" for g in GROUPS), "*"]),
        obj=st.one_of(st.sampled_from(OBJECTS), st.just("memory")),
        modes=st.lists(st.sampled_from(MODES), min_size=1, max_size=2, unique=True),
        app=st.sampled_from(APPS),
        data=st.data(),
    )
    def grant(self, to: str, obj: str, modes: list[str], app: str | None, data) -> None:
        self.ops += 1
        if obj == "memory":
            if not self.model.memories:
                return
            obj = "memory:" + data.draw(st.sampled_from(sorted(self.model.memories)))
        gid = self.owner.grant(to, modes, obj, app=app)
        self.model.grants[gid] = Grant(to, obj, tuple(modes), app)

    @precondition(lambda self: self.model.grants)
    @rule(data=st.data())
    def revoke(self, data) -> None:
        self.ops += 1
        gid = data.draw(st.sampled_from(sorted(self.model.grants)))
        self.owner.revoke(gid)
        del self.model.grants[gid]

    @rule(p=st.sampled_from(PRINCIPALS), groups=st.lists(st.sampled_from(GROUPS), unique=True),
          disabled=st.booleans())  # fmt: skip
    def change_principal(self, p: str, groups: list[str], disabled: bool) -> None:
        self.ops += 1
        self.owner.add_principal(p, groups=groups, disabled=disabled)
        self.model.groups[p] = tuple(groups)
        (self.model.disabled.add if disabled else self.model.disabled.discard)(p)

    # -- principals call ---------------------------------------------------------------------

    @precondition(lambda self: self.model.memories)
    @rule(p=st.sampled_from(PRINCIPALS), app=st.sampled_from(APPS), data=st.data())
    def get_and_history(self, p: str, app: str | None, data) -> None:
        mid = data.draw(st.sampled_from(sorted(self.model.memories)))
        svc, c = self.service, self._caller(p, app)
        ok = self.model.readable(p, mid, app)
        got = self._expect(ok, lambda: svc.get(c, mid, min_offset=self.owner.head))
        assert got is None or got.memory_id == mid
        self._expect(ok, lambda: svc.history(c, mid, min_offset=self.owner.head))
        audit_ok = self.model.may(p, "audit", self.model.memories[mid][0], mid, app)
        self._expect(
            audit_ok, lambda: svc.audit(c, AuditQuery(memory_id=mid), min_offset=self.owner.head)
        )

    @rule(p=st.sampled_from(PRINCIPALS), app=st.sampled_from(APPS), ns=st.sampled_from(NAMESPACES))
    def write(self, p: str, app: str | None, ns: str) -> None:
        i = next(self.counter)
        ops = self.service.operations(self._caller(p, app))
        got = self._expect(
            self.model.may(p, "write", ns, None, app),
            lambda: ops.create(ns, f"memory {i} about tea, written by {p}", vector=_vector(i)),
        )
        if got is not None:
            self.model.memories[got.memory_id] = (ns, "active", ())
            self._snapshot()

    @rule(
        p=st.sampled_from(PRINCIPALS),
        app=st.sampled_from(APPS),
        namespaces=st.one_of(
            st.none(), st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=3, unique=True)
        ),  # fmt: skip
        tag=st.sampled_from([None, *TAGS]),
        archived=st.booleans(),
        past=st.booleans(),
        keyword=st.booleans(),
        data=st.data(),
    )
    def search(self, p, app, namespaces, tag, archived, past, keyword, data) -> None:
        as_of, memories = None, self.model.memories
        if past and self.snapshots:
            as_of, memories = data.draw(st.sampled_from(self.snapshots))
        states = {"active", "archived"} if archived else {"active"}
        expected = {
            mid for mid, (ns, state, tags) in memories.items()
            if state in states and (namespaces is None or ns in namespaces)
            and (tag is None or tag in tags) and self.model.may(p, "read", ns, mid, app)
        }  # fmt: skip
        query: dict = dict(query="tea", alpha=0.0) if keyword else dict(vector=_vector(0))
        q = SearchQuery(
            **query, namespaces=namespaces, tags_any=[tag] if tag else None, k=1000,
            include_archived=archived, as_of=as_of,
        )  # fmt: skip
        head = self.owner.head
        hits = self._expect(
            True, lambda: self.service.search(self._caller(p, app), q, min_offset=head)
        )
        got = {h.memory.memory_id for h in hits}
        STATS["hits"] += len(got)
        assert got <= expected, f"hits the caller may not read: {got - expected}"
        assert got == expected, f"readable matches missing: {expected - got}"

    @rule(p=st.sampled_from(PRINCIPALS), app=st.sampled_from(APPS), ns=st.sampled_from(NAMESPACES))
    def list_namespace(self, p: str, app: str | None, ns: str) -> None:
        expected = {
            mid for mid, (n, state, _) in self.model.memories.items()
            if n == ns and state == "active" and self.model.may(p, "read", n, mid, app)
        }  # fmt: skip
        page = self._expect(
            self.model.may(p, "read", ns, None, app) or self.model.one_by_one(p, app),
            lambda: self.service.list_memories(
                self._caller(p, app),
                ListQuery(namespace=ns, limit=10_000),
                min_offset=self.owner.head,
            ),
        )
        if page is not None:
            assert {m.memory_id for m in page.memories} == expected

    @invariant()
    def who_can_read_matches(self) -> None:
        if not hasattr(self, "owner"):
            return
        for ns in NAMESPACES[:2]:
            expected = sorted(
                p
                for p in PRINCIPALS
                if self.model.may(p, "read", ns, None, None)
                or any(self.model.may(p, "read", ns, None, a) for a in APPS)
            )
            assert self.owner.who_can("read", namespace=ns) == expected


def test_access_control_agrees_with_the_model_over_ten_thousand_operations() -> None:
    """30 runs of the state machine; every answer checked, and the checks counted."""
    STATS.update(runs=0, operations=0, hits=0, refusals=0)
    run_state_machine_as_test(
        GovernanceMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=500,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        ),
    )
    print(STATS)
    assert STATS["operations"] >= 10_000, STATS
    assert STATS["hits"] > 0 and STATS["refusals"] > 0, STATS
