"""Properties of the pure decision function over arbitrary operation sequences."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from memstream.projections.decide import DecisionState, decide
from memstream.schemas import events as ev
from memstream.schemas.memcube import Logged

IDS = ["a", "b", "c", "d"]
OPS = ["create", "revise", "activate", "archive", "restore", "rollback", "expire", "freeze",
       "unfreeze", "erase", "erase_subject", "merge", "artifact_built"]  # fmt: skip
PAYLOADS = {
    "create": lambda: ev.Create(text="t"),
    "revise": lambda: ev.Revise(text="t2"),
    "rollback": lambda: ev.Rollback(to_version=1),
    "erase": lambda: ev.Erase(scope="memory", reason="r"),
    "erase_subject": lambda: ev.Erase(scope="subject", reason="r"),
    "artifact_built": lambda: ev.ArtifactBuilt(
        artifact_id="x", artifact_kind="kv_cache", model="m", path="p", checksum="c"
    ),
}

step = st.tuples(
    st.sampled_from(OPS),
    st.sampled_from(IDS),
    st.sampled_from(["user/alice", "user/bob"]),
    st.lists(st.sampled_from(IDS), min_size=2, max_size=3),
    st.one_of(st.none(), st.integers(0, 6)),
    st.sampled_from([None, "person/x"]),
)


def make(i: int, op, mid, ns, sources, expected, subject) -> Logged:
    if op == "merge":
        payload: ev.Payload = ev.Merge(sources=sources, text="m")
        mid = f"merged-{i}"
    elif op in PAYLOADS:
        payload = PAYLOADS[op]()
    else:
        payload = ev.default_registry().types[op].payload(reason=None)
    if op == "erase_subject":
        op = "erase"
    e = ev.Event(
        event_id=f"00000000-0000-7000-8000-{i:012d}",
        type=op,
        schema_version=payload.VERSION,
        namespace=ns,
        memory_id=mid,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor="prop",
        expected_version=expected,
        subject=subject,
        payload=payload,
    )
    # sealed under the memory's data key; every seventh under the bare subject key (legacy)
    kid = None
    if op not in ("erase", "artifact_built"):
        kid = f"{subject or ns}#1" if i % 7 == 0 else f"{subject or ns}#1/{mid}#1"
    return Logged(i, 1_000 + i, b"", e, kid, None)


def run(seq) -> list:
    state = DecisionState()
    out = []
    for i, s in enumerate(seq):
        logged = make(i, *s)
        before = {k: v for k, v in state.memories.items()}
        o = decide(state, logged)
        assert state.memories == before, "decide must not modify the state"
        state.commit(logged, o)
        out.append((o, before, dict(state.memories)))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_same_sequence_same_verdicts(seq):
    assert [o for o, _, _ in run(seq)] == [o for o, _, _ in run(seq)]


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_lifecycle_invariants(seq):
    for o, before, after in run(seq):
        changed = {k for k in after if before.get(k) != after[k]}
        if o.status == "rejected":
            assert not changed and o.code and o.reason
            continue
        if o.type == "erase":
            assert changed == set(o.erased)
            assert all(after[m].state == "erased" for m in changed)
            if o.destroy_key is not None and o.destroy_key.scope == "memory":
                assert o.erased == (o.memory_id,), "a memory erase erases that memory alone"
        for mid in changed:
            old, new = before.get(mid), after[mid]
            if old is None:
                assert new.revision == 1 and new.version == 1
                continue
            assert new.revision == old.revision + 1
            assert old.state != "erased", "nothing changes an erased memory"
            if old.frozen:
                assert o.type == "unfreeze" and not new.frozen
            content = o.type in ("revise", "rollback") and mid == o.memory_id
            assert new.version == old.version + (1 if content else 0)
            assert new.namespace == old.namespace and new.subject == old.subject
