"""Deciding events: the one place where the lifecycle is enforced.

:func:`decide` is a pure function of (state, logged event): it reads the state and
returns an :class:`Outcome` holding the post-states of every memory it changes.
:meth:`DecisionState.commit` then folds an outcome into the state. Every driver (embedded,
Kafka) and every replay calls exactly this, in log order, so every run reaches the same
verdicts. Decisions read only the envelope and the payload's *clear* fields, never sealed
content, so they do not change once a subject's key has been destroyed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from memstream.schemas import lifecycle as lc
from memstream.schemas.events import Create, Merge
from memstream.schemas.keyid import KeyId
from memstream.schemas.memcube import KeyDestruction, Logged, MemState, Outcome

from . import policy as gov

replace = msgspec.structs.replace

VERSION_CONFLICT = "version_conflict"
CROSS_NAMESPACE = "cross_namespace"
SUBJECT_MISMATCH = "subject_mismatch"
KEY_ERASED = "key_erased"
INVALID_MERGE = "invalid_merge"
INVALID_ROLLBACK = "invalid_rollback"
SEALED_BY_SUBJECT = "sealed_by_subject"
UNKNOWN_SUBJECT = "unknown_subject"
RESERVED_NAMESPACE = "reserved_namespace"


@dataclass
class DecisionState:
    """What deciding needs to know: every memory's MemState and each subject's keys."""

    memories: dict[str, MemState] = field(default_factory=dict)
    #: subject → ids of its memories (an erase reaches all of them).
    by_subject: dict[str, set[str]] = field(default_factory=dict)
    #: subject → highest key generation seen in the log.
    key_generation: dict[str, int] = field(default_factory=dict)
    #: subject → generation up to which its keys are destroyed.
    erased_generation: dict[str, int] = field(default_factory=dict)

    #: memories with a payload sealed directly under a subject key (records written before
    #: per-memory keys): erasing one of them alone cannot shred that content.
    legacy_sealed: set[str] = field(default_factory=set)
    #: (subject, memory id) → the highest number of the memory's data keys seen in the log,
    #: where above 1 (rare: a memory recreated after its subject's erase, or written to
    #: after its own). A memory erase destroys its data keys up to that number, so that a
    #: replay destroys what the live store destroyed, not keys made after the erase.
    data_key_number: dict[tuple[str, str], int] = field(default_factory=dict)
    #: the governance rules (principals, tokens, grants, namespace policies) so far
    policy: gov.PolicyState = field(default_factory=gov.PolicyState)
    #: every namespace that has held a memory (replaced, never changed in place, so a
    #: reader on another thread iterates one version)
    namespaces: frozenset[str] = frozenset()

    def commit(self, logged: Logged, outcome: Outcome) -> None:
        """Fold an outcome (and the key id the record was sealed under) into the state."""
        kid = logged.key_id
        if kid is not None:
            k = KeyId.parse(kid)
            if k.generation > self.key_generation.get(k.subject, 0):
                self.key_generation[k.subject] = k.generation
            if k.memory_id is None:
                self.legacy_sealed.add(logged.event.memory_id)
            elif k.dek_generation > 1:
                pair = (k.subject, k.memory_id)
                if k.dek_generation > self.data_key_number.get(pair, 1):
                    self.data_key_number[pair] = k.dek_generation
        for m in outcome.changes:
            if m.memory_id not in self.memories:
                self.by_subject.setdefault(m.subject, set()).add(m.memory_id)
                if m.namespace not in self.namespaces:
                    self.namespaces = self.namespaces | {m.namespace}
            self.memories[m.memory_id] = m
        d = outcome.destroy_key
        if d is not None and d.scope == "subject":
            self.erased_generation[d.subject] = d.generation
        if logged.event.type in gov.GOVERNANCE_TYPES:
            self.policy.apply(logged, outcome)

    def load(
        self,
        memories: list[MemState],
        keys: list[tuple[str, int, int]],
        legacy_sealed: list[str] | None = None,
        data_key_numbers: list[tuple[str, str, int]] | None = None,
    ) -> None:
        """Restore from a projection: memories, (subject, generation, erased_generation),
        the memories with a legacy-sealed payload and (subject, memory id, data key number)
        where above 1."""
        for m in memories:
            self.memories[m.memory_id] = m
            self.by_subject.setdefault(m.subject, set()).add(m.memory_id)
        self.namespaces = self.namespaces | {m.namespace for m in memories}
        for subject, gen, erased in keys:
            if gen:
                self.key_generation[subject] = gen
            if erased:
                self.erased_generation[subject] = erased
        self.legacy_sealed.update(legacy_sealed or ())
        for subject, memory_id, n in data_key_numbers or ():
            self.data_key_number[(subject, memory_id)] = n


def _reject(logged: Logged, code: str, reason: str, current: MemState | None = None) -> Outcome:
    ev = logged.event
    return Outcome(
        offset=logged.offset,
        recorded_at=logged.recorded_at,
        event_id=ev.event_id,
        type=ev.type,
        namespace=ev.namespace,
        memory_id=ev.memory_id,
        status="rejected",
        code=code,
        reason=reason,
        version=current.version if current else None,
        revision=current.revision if current else None,
        state=current.state if current else None,
    )


def _accept(logged: Logged, target: MemState, changes: tuple[MemState, ...], **kw) -> Outcome:
    ev = logged.event
    return Outcome(
        offset=logged.offset,
        recorded_at=logged.recorded_at,
        event_id=ev.event_id,
        type=ev.type,
        namespace=ev.namespace,
        memory_id=ev.memory_id,
        status="accepted",
        version=target.version,
        revision=target.revision,
        state=target.state,
        changes=changes,
        **kw,
    )


_EXPLAIN = {
    lc.UNKNOWN: "memory {id} does not exist in {ns}; create it first",
    lc.EXISTS: "memory {id} already exists; revise it, or create under a new id",
    lc.FROZEN: "memory {id} is frozen (legal hold); unfreeze it first",
    lc.ERASED: "memory {id} was erased; nothing can change it any more",
}


def _explain(code: str, op: str, m: MemState | None, ev) -> str:
    if code in _EXPLAIN:
        return _EXPLAIN[code].format(id=ev.memory_id, ns=ev.namespace)
    state = m.state if m else lc.ABSENT
    hint = {
        ("archived", "revise"): "; restore it first",
        ("archived", "activate"): "; restore it first",
        ("archived", "rollback"): "; restore it first",
        ("active", "restore"): " (only archived memories are restored)",
        ("activated", "restore"): " (only archived memories are restored)",
        ("activated", "activate"): " (it is already activated)",
        ("archived", "archive"): " (it is already archived)",
        ("expired", "expire"): " (it is already expired)",
    }.get((state, op), "")
    if op == "unfreeze":
        hint = " (it is not frozen)"
    return f"cannot {op.replace('_', ' ')} memory {ev.memory_id}: it is {state}{hint}"


def decide(state: DecisionState, logged: Logged) -> Outcome:
    """The verdict on ``logged`` given ``state``. Pure: ``state`` is not modified."""
    ev = logged.event
    subject = ev.effective_subject

    # A payload sealed under a key that an earlier erase destroyed is gone: refuse it.
    if logged.key_id is not None:
        k = KeyId.parse(logged.key_id)
        if k.generation <= state.erased_generation.get(k.subject, 0):
            return _reject(
                logged,
                KEY_ERASED,
                f"the payload was sealed under key {logged.key_id}, destroyed by an earlier "
                f"erase of subject {k.subject}; publish it again",
                state.memories.get(ev.memory_id),
            )

    if ev.type in gov.GOVERNANCE_TYPES:
        return gov.decide(state.policy, logged)
    if ev.namespace == gov.GOVERNANCE_NAMESPACE:
        return _reject(
            logged,
            RESERVED_NAMESPACE,
            f"namespace {ev.namespace} holds the store's governance events; write memories "
            "to another namespace",
            state.memories.get(ev.memory_id),
        )
    if ev.type == "erase" and ev.ref("scope") == "subject":
        return _decide_subject_erase(state, logged)
    current = state.memories.get(ev.memory_id)
    if ev.type == "merge":
        return _decide_merge(state, logged, current)
    op = ev.type
    r = lc.rule(current.state if current else lc.ABSENT, current.frozen if current else False, op)
    if not r.allowed:
        return _reject(
            logged, r.code or lc.INVALID, _explain(r.code or "", op, current, ev), current
        )

    if current is not None:
        if current.namespace != ev.namespace:
            return _reject(
                logged,
                CROSS_NAMESPACE,
                f"memory {ev.memory_id} lives in namespace {current.namespace}, not {ev.namespace}",
                current,
            )
        if current.subject != subject:
            return _reject(
                logged,
                SUBJECT_MISMATCH,
                f"memory {ev.memory_id} is sealed under subject {current.subject}; "
                f"this event names subject {subject}",
                current,
            )
        if ev.expected_version is not None and ev.expected_version != current.revision:
            return _reject(
                logged,
                VERSION_CONFLICT,
                f"memory {ev.memory_id} is at revision {current.revision}, the event expected "
                f"{ev.expected_version}; read it again and retry",
                current,
            )
    elif ev.expected_version not in (None, 0):
        return _reject(
            logged,
            VERSION_CONFLICT,
            f"memory {ev.memory_id} does not exist (revision 0), the event expected "
            f"{ev.expected_version}",
        )

    t = logged.recorded_at
    if op == "create":
        p = ev.payload
        new = _new_state(ev, logged, subject, p if isinstance(p, Create) else None)
        return _accept(logged, new, (new,))

    assert current is not None
    common = dict(
        revision=current.revision + 1,
        updated_at=t,
        updated_by=ev.actor,
        updated_offset=logged.offset,
    )
    if op == "revise":
        p = ev.payload
        upd = dict(common, version=current.version + 1, state=r.next_state)
        if p is not None:
            if p.tags is not None:
                upd["tags"] = tuple(p.tags)
            if p.metadata is not None:
                upd["metadata"] = p.metadata
        new = replace(current, **upd)
        return _accept(logged, new, (new,))
    if op == "rollback":
        to = ev.ref("to_version")
        if to >= current.version:
            return _reject(
                logged,
                INVALID_ROLLBACK,
                f"memory {ev.memory_id} is at version {current.version}; roll back to an "
                f"earlier version (1..{current.version - 1})",
                current,
            )
        new = replace(current, **common, version=current.version + 1, state=r.next_state)
        return _accept(logged, new, (new,))
    if op == "freeze":
        new = replace(current, **common, frozen=True)
        return _accept(logged, new, (new,))
    if op == "unfreeze":
        new = replace(current, **common, frozen=False)
        return _accept(logged, new, (new,))
    if op == "erase":
        return _decide_erase(state, logged, current, common)
    new = replace(current, **common, state=r.next_state)
    return _accept(logged, new, (new,))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(when: datetime) -> int:
    """An aware time as integer microseconds since the epoch (the log's own unit)."""
    return (when - _EPOCH) // _US


def _new_state(ev, logged: Logged, subject: str, p: Create | Merge | None, **kw) -> MemState:
    t = logged.recorded_at
    if isinstance(p, Create):  # the common case, in one call (no keyword dicts to merge)
        return MemState(
            memory_id=ev.memory_id,
            namespace=ev.namespace,
            subject=subject,
            kind=p.kind,
            state="active",
            version=1,
            revision=1,
            tags=tuple(p.tags),
            metadata=p.metadata,
            source=p.source,
            owner=p.owner,
            visibility=p.visibility,
            priority=p.priority,
            ttl_seconds=p.ttl_seconds,
            retention_days=p.retention_days,
            expires_at=None if p.expires_at is None else _us(p.expires_at),
            created_at=t,
            updated_at=t,
            created_by=ev.actor,
            updated_by=ev.actor,
            created_offset=logged.offset,
            updated_offset=logged.offset,
            **kw,
        )
    return MemState(
        memory_id=ev.memory_id,
        namespace=ev.namespace,
        subject=subject,
        kind=p.kind if p is not None else "plaintext",
        state="active",
        version=1,
        revision=1,
        tags=tuple(p.tags) if p is not None else (),
        metadata=p.metadata if p is not None else {},
        created_at=t,
        updated_at=t,
        created_by=ev.actor,
        updated_by=ev.actor,
        created_offset=logged.offset,
        updated_offset=logged.offset,
        **kw,
    )


def _decide_merge(state: DecisionState, logged: Logged, current: MemState | None) -> Outcome:
    ev = logged.event
    if current is not None:
        return _reject(
            logged,
            lc.EXISTS,
            f"cannot merge into memory {ev.memory_id}: it already exists; merge into a new id",
            current,
        )
    if ev.expected_version not in (None, 0):
        return _reject(
            logged,
            VERSION_CONFLICT,
            f"merge target {ev.memory_id} does not exist (revision 0), the event expected "
            f"{ev.expected_version}",
        )
    sources: list[str] = list(ev.ref("sources"))
    if len(set(sources)) != len(sources) or ev.memory_id in sources:
        return _reject(
            logged,
            INVALID_MERGE,
            "merge sources must be distinct and must not include the merged memory's own id",
        )
    t = logged.recorded_at
    changes = []
    parents = []
    for sid in sources:
        src = state.memories.get(sid)
        st = src.state if src else lc.ABSENT
        r = lc.rule(st, src.frozen if src else False, "merge_source")
        if not r.allowed:
            why = _explain(r.code or "", "merge_source", src, ev).replace(
                f"memory {ev.memory_id}", f"memory {sid}"
            )
            return _reject(logged, r.code or lc.INVALID, f"merge source {sid}: {why}")
        assert src is not None
        if src.namespace != ev.namespace:
            return _reject(
                logged,
                CROSS_NAMESPACE,
                f"merge source {sid} lives in namespace {src.namespace}; a merge stays "
                f"within one namespace ({ev.namespace})",
            )
        parents.append((sid, src.version))
        changes.append(
            replace(
                src,
                state=r.next_state,
                revision=src.revision + 1,
                updated_at=t,
                updated_by=ev.actor,
                updated_offset=logged.offset,
            )
        )
    p = ev.payload
    new = _new_state(
        ev,
        logged,
        ev.effective_subject,
        p if isinstance(p, Merge) else None,
        parents=tuple(parents),
    )
    return _accept(logged, new, (new, *changes))


def _erased(m: MemState, **kw) -> MemState:
    """``m`` erased: its descriptive metadata (tags, metadata, source) goes with its content."""
    return replace(m, state="erased", tags=(), metadata={}, source=None, **kw)


def _decide_erase(state: DecisionState, logged: Logged, current: MemState, common) -> Outcome:
    """Scope ``memory``: this memory alone (its data keys are destroyed)."""
    ev = logged.event
    if ev.memory_id in state.legacy_sealed:
        return _reject(
            logged,
            SEALED_BY_SUBJECT,
            f"memory {ev.memory_id} has content sealed directly under the key of subject "
            f"{current.subject} (written before per-memory keys), which cannot be destroyed "
            f"for this memory alone; erase subject {current.subject} instead (erase_subject)",
            current,
        )
    new = _erased(current, **common)
    n = state.data_key_number.get((current.subject, ev.memory_id), 1)
    destroy = KeyDestruction(
        scope="memory", subject=current.subject, memory_id=ev.memory_id, generation=n
    )
    return _accept(logged, new, (new,), destroy_key=destroy, erased=(ev.memory_id,))


def _decide_subject_erase(state: DecisionState, logged: Logged) -> Outcome:
    """Scope ``subject``: every memory of the subject (its keys are destroyed). The
    envelope's memory id names no memory (by convention the event id)."""
    ev = logged.event
    subject = ev.effective_subject
    members = sorted(state.by_subject.get(subject, ()))
    if not members:
        return _reject(
            logged,
            UNKNOWN_SUBJECT,
            f"subject {subject} has no memory here; nothing to erase",
        )
    frozen = [m for m in members if state.memories[m].frozen]
    if frozen:
        return _reject(
            logged,
            lc.FROZEN,
            f"erasing subject {subject} destroys its keys, which also seal frozen memories "
            f"{', '.join(frozen[:5])}; unfreeze them first",
        )
    t = logged.recorded_at
    changes = tuple(
        _erased(
            m,
            revision=m.revision + 1,
            updated_at=t,
            updated_by=ev.actor,
            updated_offset=logged.offset,
        )
        for m in (state.memories[mid] for mid in members)
        if m.state != "erased"
    )
    gen = state.key_generation.get(subject, 0)
    destroy = KeyDestruction(scope="subject", subject=subject, generation=gen) if gen else None
    return Outcome(
        offset=logged.offset,
        recorded_at=logged.recorded_at,
        event_id=ev.event_id,
        type=ev.type,
        namespace=ev.namespace,
        memory_id=ev.memory_id,
        status="accepted",
        state="erased",
        changes=changes,
        destroy_key=destroy,
        erased=tuple(m.memory_id for m in changes),
    )
