"""TTL and retention as events: the scheduler that expires and erases memories when their
rules fall due (docs/governance.md, "TTL and retention").

The rules are facts the log already holds (a create's ``ttl_seconds``, ``expires_at`` and
``retention_days``; when a memory expired; its last change) plus two that are not on the
log: the namespace policies (:class:`RetentionPolicy`, through an injected
``retention_for(namespace)``) and the last access of each memory (the usage indicators).
:class:`RetentionScheduler` is a processor of the decided events: it keeps a queue of the
memories that have a rule, ordered by the time the rule falls due, built from the core
projection when it starts and updated from every decided event after that. A pass pops
what is due and appends one ``expire`` or ``erase`` per memory, with
:data:`SCHEDULER` as actor, the revision it decided on as ``expected_version``, and an
event id derived from (memory, revision, rule): a second scheduler, or the same one after
a restart, derives the same id, and the log keeps one event per id.

Nothing the scheduler decides is needed to replay the store: its events are ordinary
events, decided like any other.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from memstream.projections.duck import DuckStore
from memstream.projections.policy import PolicyState
from memstream.projections.processor import Decided, ProcessorContext
from memstream.schemas.events import Context, Erase, Event, Expire
from memstream.schemas.memcube import MemState, Outcome

__all__ = [
    "NAME",
    "SCHEDULER",
    "Due",
    "RetentionPolicy",
    "RetentionReport",
    "RetentionScheduler",
    "plan",
    "retention_event_id",
]

log = logging.getLogger("memstream.retention")

#: The actor of every event the scheduler appends.
SCHEDULER = "memstream:scheduler"
#: The processor's name (its lane, and what a wait for it names).
NAME = "retention"
#: The namespace of the name-based (version 5) UUIDs of the scheduler's events. Fixed for
#: good: changing it would let a new scheduler emit again what an old one emitted.
EVENT_ID_NAMESPACE = uuid.UUID("b12421e5-c824-4290-afce-d0c5cbb9f209")

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
#: The largest number of days a policy may name (about 10,000 years).
MAX_DAYS = 3_650_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
#: the last microsecond a ``datetime`` holds (a later due time is shown as this)
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_US
#: States an expiry rule applies to; a retention rule applies to ``expired``.
EXPIRABLE = frozenset({"active", "activated", "archived"})
_CONTEXT = Context(app="memstream", purpose="retention")
#: Most events appended in one batch (one transaction) by a pass.
EMIT_BATCH = 500

Operation = Literal["expire", "erase"]


@dataclass(frozen=True)
class RetentionPolicy:
    """A namespace's retention policy (each rule optional, in whole days, at least 1).

    - ``expire_after_idle_days``: expire a memory that many days after its last activity
      (its last change, or its last access if later);
    - ``erase_after_expired_days``: erase (scope ``memory``) a memory that many days after
      it expired.
    """

    expire_after_idle_days: int | None = None
    erase_after_expired_days: int | None = None

    def __post_init__(self) -> None:
        for name in ("expire_after_idle_days", "erase_after_expired_days"):
            value = getattr(self, name)
            if value is None:
                continue
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not (1 <= value <= MAX_DAYS)
            ):
                raise ValueError(
                    f"RetentionPolicy.{name} must be a whole number of days from 1 to "
                    f"{MAX_DAYS}, or None for no such rule; not {value!r}"
                )


#: What the scheduler asks for a namespace's policy (None: no policy).
RetentionFor = Callable[[str], RetentionPolicy | None]
#: The time now, aware (injectable: tests move a fake clock).
Clock = Callable[[], datetime]
#: memory ids -> their last access, for those accessed at all.
LastAccess = Callable[[Sequence[str]], Mapping[str, datetime]]
#: Appends events as the scheduler and returns their outcomes, in order.
Emit = Callable[[list[Event]], list[Outcome]]


def retention_event_id(memory_id: str, revision: int, rule: str) -> str:
    """The id of the event that applies ``rule`` to ``memory_id`` at ``revision``: the same
    for every scheduler, so that the log keeps one such event (a UUID, version 5)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{memory_id}\x1f{revision}\x1f{rule}"))


def _us(when: datetime) -> int:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"now must be a time with a timezone, e.g. datetime(..., tzinfo=UTC), not {when}"
        )
    return (when - _EPOCH) // _ONE_US


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class Due(msgspec.Struct, frozen=True, kw_only=True):
    """One memory whose rule fell due, and what became of the event for it.

    ``status`` is ``accepted``, ``rejected`` (``code`` says why: the memory changed since
    the decision, ``version_conflict``; it was frozen meanwhile, ``frozen``...) or
    ``duplicate`` (another scheduler appended the same event first); None in a dry run.
    """

    memory_id: str
    namespace: str
    operation: Operation
    rule: str
    due_at: datetime
    revision: int
    event_id: str
    status: Literal["accepted", "rejected", "duplicate"] | None = None
    code: str | None = None
    offset: int | None = None


class RetentionReport(msgspec.Struct, frozen=True, kw_only=True):
    """One pass of the scheduler: the time it ran as, and the memories due then."""

    now: datetime
    dry_run: bool
    due: list[Due]
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0


class _Tracked(msgspec.Struct, kw_only=True, gc=False):
    """What the scheduler keeps of a memory that has a rule (one per memory)."""

    memory_id: str
    namespace: str
    subject: str
    state: str
    frozen: bool
    revision: int
    created_at: int
    updated_at: int
    ttl_seconds: int | None
    expires_at: int | None
    retention_days: int | None
    #: when the memory expired (µs), for a memory in state ``expired``
    expired_at: int | None = None
    #: the later of its last change and the last access seen
    activity: int = 0
    #: the planned decision: due time (None: nothing planned, or already emitted)
    due: int | None = None
    operation: str = ""
    rule: str = ""


def plan(
    m: Any, policy: RetentionPolicy | None, *, expired_at: int | None = None,
    activity: int | None = None,
) -> tuple[int, Operation, str] | None:  # fmt: skip
    """The next rule of memory ``m`` to fall due: (due time in µs, operation, rule), or
    None when no rule applies (frozen, merged, erased, or no rule set).

    ``m`` has a :class:`~memstream.schemas.memcube.MemState`'s fields (state, frozen,
    created_at, updated_at, ttl_seconds, expires_at, retention_days). ``expired_at`` is when
    it expired (for an expired memory); ``activity`` the last access, if later than its
    last change. Of several rules the earliest wins (on a tie, in the order of the table in
    docs/governance.md).
    """
    if m.frozen:
        return None
    candidates: list[tuple[int, int, str]] = []
    op: Operation
    if m.state in EXPIRABLE:
        op = "expire"
        if m.ttl_seconds is not None:
            candidates.append((m.created_at + m.ttl_seconds * SECOND_US, 0, "ttl"))
        if m.expires_at is not None:
            candidates.append((m.expires_at, 1, "expiry time"))
        idle = policy.expire_after_idle_days if policy is not None else None
        if idle is not None:
            last = max(m.updated_at, activity or 0)
            candidates.append((last + idle * DAY_US, 2, f"idle {_days(idle)}"))
    elif m.state == "expired" and expired_at is not None:
        op = "erase"
        if m.retention_days is not None:
            days = m.retention_days
            candidates.append(
                (expired_at + days * DAY_US, 0, f"retention {_days(days)} after expiry")
            )
        after = policy.erase_after_expired_days if policy is not None else None
        if after is not None:
            rule = f"namespace retention {_days(after)} after expiry"
            candidates.append((expired_at + after * DAY_US, 1, rule))
    else:
        return None
    if not candidates:
        return None
    due, _, rule = min(candidates)
    return due, op, rule


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def _never(_: str) -> RetentionPolicy | None:
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


_LOAD_SQL = """
SELECT m.memory_id, m.namespace, m.subject, m.state, m.frozen, m.revision,
       epoch_us(m.created_at), epoch_us(m.updated_at), m.ttl_seconds,
       epoch_us(m.expires_at), m.retention_days, x.expired_at
FROM memories m
LEFT JOIN (
    SELECT memory_id, epoch_us(min(recorded_at)) AS expired_at FROM transitions
    WHERE state = 'expired' GROUP BY memory_id
) x ON x.memory_id = m.memory_id
WHERE m.state IN ('active', 'activated', 'archived', 'expired') AND NOT m.frozen
  AND (m.ttl_seconds IS NOT NULL OR m.expires_at IS NOT NULL
       OR m.retention_days IS NOT NULL OR list_contains(?, m.namespace))
"""


class RetentionScheduler:
    """Expires and erases memories when their TTLs, expiry times and retention rules fall
    due (a :class:`~memstream.projections.processor.Processor` of the decided events).

    - ``retention_for(namespace)``: the namespace's :class:`RetentionPolicy`, or None;
    - ``now()``: the time (aware), for the background passes;
    - ``interval``: seconds between two background passes (0: none; :meth:`run` only).

    The faces :meth:`attach` how it appends (as :data:`SCHEDULER`), the live state of a
    memory (to skip a decision the log has already overtaken), the last accesses (the idle
    rule) and how to wait until it has seen the whole log (before a requested pass).
    Until it is attached it keeps its queue but emits nothing.
    """

    name = NAME
    title = "the retention scheduler"

    def __init__(
        self,
        *,
        retention_for: RetentionFor | None = None,
        now: Clock | None = None,
        interval: float = 60.0,
    ) -> None:
        if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, not {interval!r}")
        self.retention_for: RetentionFor = retention_for or _never
        #: whether namespace policies were given (else the store wires its own)
        self.policies_given = retention_for is not None
        self.now: Clock = now or _utcnow
        self.interval = float(interval)
        #: the last offset applied (``-1``: none)
        self.checkpoint = -1
        self._lock = threading.RLock()
        self._tracked: dict[str, _Tracked] = {}
        #: (due µs, memory id, revision); an entry is live while it matches the memory's
        #: tracked due time and revision (stale ones are dropped when they surface)
        self._heap: list[tuple[int, str, int]] = []
        self._duck: DuckStore | None = None
        self._emit: Emit | None = None
        self._current: Callable[[str], MemState | None] | None = None
        self._last_access: LastAccess | None = None
        self._wait: Callable[[], None] | None = None
        self._active: Callable[[], bool] = lambda: True
        self._last_pass = time.monotonic()
        self._rescan = False

    def attach(
        self,
        emit: Emit,
        *,
        current: Callable[[str], MemState | None] | None = None,
        last_access: LastAccess | None = None,
        wait: Callable[[], None] | None = None,
        active: Callable[[], bool] | None = None,
    ) -> None:
        """Wire the scheduler to a store: ``emit(events) -> outcomes`` appends as
        :data:`SCHEDULER`; ``current(memory_id)`` is the memory's decided state now (a
        decision on an older revision is dropped, the newer one is on its way);
        ``last_access(ids)`` the usage indicators' last accesses; ``wait()`` blocks until
        this processor has applied the whole log (before :meth:`run`); ``active()`` says
        whether the store still takes writes (background passes stop when it does not)."""
        with self._lock:
            self._emit, self._current = emit, current
            self._last_access, self._wait = last_access, wait
            if active is not None:
                self._active = active

    # -- the processor protocol -----------------------------------------------------------------

    def start(self, ctx: ProcessorContext) -> int:
        """Build the queue from the core projection (one snapshot); its offset."""
        self._duck = ctx.duck
        with self._lock:
            return self._load(ctx.duck)

    def process(self, batch: Sequence[Decided]) -> None:
        with self._lock:
            for _, out in batch:
                if out.status == "accepted":
                    for m in out.changes:
                        self._apply(m, out)
                    if out.type == "policy":  # a namespace policy changed: plan again
                        self._rescan = True
            self.checkpoint = batch[-1][0].offset
            if len(self._heap) > 2 * len(self._tracked) + 1024:
                self._compact()

    def tick(self) -> None:
        """A background pass, once every :attr:`interval` seconds (and a rescan asked for)."""
        if self._rescan and self._duck is not None:
            with self._lock:
                self._rescan = False
                self._load(self._duck)
        if not self.interval or self._emit is None:
            return
        if time.monotonic() - self._last_pass < self.interval:
            return
        self._last_pass = time.monotonic()
        if not self._active():
            return
        try:
            with self._lock:
                report = self._pass(self.now(), dry_run=False)
        except Exception as e:  # the next pass tries again; the lane must go on
            log.warning("retention pass failed: %r", e)
            return
        if report.due:
            log.info(
                "retention: %d due, %d accepted, %d rejected, %d duplicates",
                len(report.due), report.accepted, report.rejected, report.duplicates,
            )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._tracked.clear()
            self._heap.clear()

    # -- what the faces call --------------------------------------------------------------------

    def run(self, now: datetime | None = None, *, dry_run: bool = False) -> RetentionReport:
        """One pass now (or as of ``now``): append an event for every memory whose rule
        is due (with ``dry_run``, only list them). Waits first until the scheduler has
        seen everything the log holds."""
        when = self.now() if now is None else now
        _us(when)  # a naive time is refused before anything else
        if not dry_run and self._emit is None:
            raise RuntimeError("the retention scheduler is not attached to a store")
        if self._wait is not None:
            self._wait()
        with self._lock:
            return self._pass(when, dry_run=dry_run)

    def use_policies(self, retention_for: RetentionFor) -> None:
        """Take namespace policies from ``retention_for`` from now on (and plan again)."""
        self.retention_for = retention_for
        self.policies_given = True
        self.rescan()

    def rescan(self) -> None:
        """Build the queue again from the core projection at the next tick (after a
        namespace policy changed: it then applies to every memory of the namespace)."""
        self._rescan = True

    def pending(self) -> int:
        """The number of memories with a rule planned."""
        with self._lock:
            return sum(1 for t in self._tracked.values() if t.due is not None)

    def planned(self) -> dict[str, tuple[datetime, str, str]]:
        """memory id -> (when its next rule falls due, operation, rule), for every memory
        with one planned (the last access is not consulted)."""
        with self._lock:
            return {
                t.memory_id: (_time(min(t.due, _MAX_US)), t.operation, t.rule)
                for t in self._tracked.values()
                if t.due is not None
            }

    # -- the queue ------------------------------------------------------------------------------

    def _load(self, duck: DuckStore) -> int:
        """Track every memory with a rule in the projection's snapshot; the snapshot's
        offset. Memories whose policy-free rules are all None are not read at all."""
        self._tracked.clear()
        self._heap.clear()
        with duck.reading() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                row = cur.execute(
                    "SELECT \"offset\" FROM projection_offsets WHERE projector = 'core'"
                ).fetchone()
                offset = int(row[0]) if row else -1
                namespaces = cur.execute("SELECT DISTINCT namespace FROM memories").fetchall()
                policies = {ns: p for (ns,) in namespaces if (p := self._policy(ns)) is not None}
                res = cur.execute(_LOAD_SQL, [list(policies)])
                while chunk := res.fetchmany(10_000):
                    for r in chunk:
                        t = _Tracked(
                            memory_id=r[0], namespace=r[1], subject=r[2], state=r[3],
                            frozen=r[4], revision=r[5], created_at=r[6], updated_at=r[7],
                            ttl_seconds=r[8], expires_at=r[9], retention_days=r[10],
                            expired_at=r[11] if r[3] == "expired" else None, activity=r[7],
                        )  # fmt: skip
                        self._plan(t, policies.get(t.namespace))
            finally:
                cur.execute("COMMIT")
        self.checkpoint = offset
        return offset

    def _apply(self, m: MemState, out: Outcome) -> None:
        """Follow one post-state of a decided event."""
        mid = m.memory_id
        old = self._tracked.get(mid)
        if old is not None and m.revision <= old.revision:
            return  # already reflected (a rescan's snapshot was ahead of this event)
        if old is not None:
            del self._tracked[mid]
        if m.state not in EXPIRABLE and m.state != "expired":
            return  # erased or merged: out of the queue for good
        if m.frozen:
            return  # a legal hold: examined again when it is unfrozen
        policy = self._policy(m.namespace)
        if (
            m.ttl_seconds is None and m.expires_at is None and m.retention_days is None
            and policy is None
        ):  # fmt: skip
            return
        expired_at = None
        if m.state == "expired":
            if old is not None and old.state == "expired":
                expired_at = old.expired_at
            elif out.type == "expire" and out.memory_id == mid:
                expired_at = out.recorded_at
            else:  # a change of an expired memory this scheduler did not follow (unfreeze)
                expired_at = self._expired_at(mid, m.updated_at)
        t = _Tracked(
            memory_id=mid, namespace=m.namespace, subject=m.subject, state=m.state,
            frozen=m.frozen, revision=m.revision, created_at=m.created_at,
            updated_at=m.updated_at, ttl_seconds=m.ttl_seconds, expires_at=m.expires_at,
            retention_days=m.retention_days, expired_at=expired_at, activity=m.updated_at,
        )  # fmt: skip
        self._plan(t, policy)

    def _policy(self, namespace: str) -> RetentionPolicy | None:
        """The namespace's policy; a lookup that fails counts as none (and is logged), so
        that one bad policy cannot stop the scheduler for every other namespace."""
        try:
            return self.retention_for(namespace)
        except Exception:
            log.exception("retention: the policy of namespace %s cannot be read", namespace)
            return None

    def _expired_at(self, memory_id: str, fallback: int) -> int:
        """When the memory expired, from the projection's transitions."""
        if self._duck is None:
            return fallback
        with self._duck.reading() as cur:
            row = cur.execute(
                "SELECT epoch_us(min(recorded_at)) FROM transitions "
                "WHERE memory_id = ? AND state = 'expired'",
                [memory_id],
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else fallback

    def _plan(self, t: _Tracked, policy: RetentionPolicy | None) -> None:
        """Plan ``t``'s next rule and queue it (nothing planned: not tracked)."""
        planned = plan(t, policy, expired_at=t.expired_at, activity=t.activity)
        if planned is None:
            self._tracked.pop(t.memory_id, None)
            return
        t.due, t.operation, t.rule = planned
        self._tracked[t.memory_id] = t
        heapq.heappush(self._heap, (t.due, t.memory_id, t.revision))

    def _compact(self) -> None:
        self._heap = [
            (t.due, t.memory_id, t.revision) for t in self._tracked.values() if t.due is not None
        ]
        heapq.heapify(self._heap)

    # -- a pass ---------------------------------------------------------------------------------

    def _pass(self, now: datetime, *, dry_run: bool) -> RetentionReport:
        now_us = _us(now)
        due: list[tuple[_Tracked, int, Operation, str]] = []
        if dry_run:
            for t in sorted(
                (t for t in self._tracked.values() if t.due is not None and t.due <= now_us),
                key=lambda t: (t.due, t.memory_id),
            ):
                decided = self._decide(t, now_us, keep=False)
                if decided is not None:
                    due.append((t, *decided))
        else:
            heap = self._heap
            while heap and heap[0][0] <= now_us:
                at, mid, revision = heapq.heappop(heap)
                t = self._tracked.get(mid)
                if t is None or t.revision != revision or t.due != at:
                    continue  # stale: the memory changed, or was handled
                decided = self._decide(t, now_us, keep=True)
                if decided is not None:
                    due.append((t, *decided))
        if dry_run:
            return RetentionReport(
                now=now, dry_run=True, due=[self._due(t, at, op, rule) for t, at, op, rule in due]
            )
        return self._emit_all(now, due)

    def _decide(self, t: _Tracked, now_us: int, *, keep: bool) -> tuple[int, Operation, str] | None:
        """``t``'s rule as it stands at ``now_us`` (None: not due after all). With
        ``keep``, what the check finds is kept (a later access moves an idle rule on)."""
        if self._current is not None:
            live = self._current(t.memory_id)
            if live is None or live.revision != t.revision or live.frozen:
                return None  # the log moved on: its decided event re-plans the memory
        policy = None
        if t.rule.startswith("idle ") and self._last_access is not None:
            seen = self._last_access([t.memory_id]).get(t.memory_id)
            if seen is not None and _us(seen) > t.activity:
                policy = self._policy(t.namespace)
                planned = plan(t, policy, expired_at=t.expired_at, activity=_us(seen))
                if keep:
                    t.activity = _us(seen)
                if planned is None:
                    if keep:
                        t.due = None
                    return None
                if planned[0] > now_us:
                    if keep:
                        t.due, t.operation, t.rule = planned
                        heapq.heappush(self._heap, (t.due, t.memory_id, t.revision))
                    return None
                return planned
        assert t.due is not None
        return t.due, t.operation, t.rule  # type: ignore[return-value]

    @staticmethod
    def _due(t: _Tracked, at: int, op: Operation, rule: str, **kw: Any) -> Due:
        return Due(
            memory_id=t.memory_id, namespace=t.namespace, operation=op, rule=rule,
            due_at=_time(at), revision=t.revision,
            event_id=retention_event_id(t.memory_id, t.revision, rule), **kw,
        )  # fmt: skip

    @staticmethod
    def _event(t: _Tracked, at: int, op: Operation, rule: str) -> Event:
        payload = Expire(reason=rule) if op == "expire" else Erase(scope="memory", reason=rule)
        return Event(
            event_id=retention_event_id(t.memory_id, t.revision, rule),
            type=op,
            schema_version=type(payload).VERSION,
            namespace=t.namespace,
            memory_id=t.memory_id,
            occurred_at=_time(at),
            actor=SCHEDULER,
            context=_CONTEXT,
            expected_version=t.revision,
            subject=t.subject if t.subject != t.namespace else None,
            payload=payload,
        )

    def _emit_all(
        self, now: datetime, due: list[tuple[_Tracked, int, Operation, str]]
    ) -> RetentionReport:
        assert self._emit is not None
        done: list[Due] = []
        counts = {"accepted": 0, "rejected": 0, "duplicate": 0}
        try:
            for i in range(0, len(due), EMIT_BATCH):
                chunk = due[i : i + EMIT_BATCH]
                outcomes = self._emit([self._event(*d) for d in chunk])
                for (t, at, op, rule), o in zip(chunk, outcomes, strict=True):
                    t.due = None  # decided: not again, until the memory changes
                    status = "duplicate" if o.duplicate else o.status
                    counts[status] += 1
                    if status == "rejected":
                        log.info(
                            "retention: %s of memory %s (%s) was rejected: %s",
                            op, t.memory_id, rule, o.reason,
                        )  # fmt: skip
                    done.append(
                        self._due(t, at, op, rule, status=status, code=o.code, offset=o.offset)
                    )
        except BaseException:
            # What was not appended is due again at the next pass.
            for t, _, _, _ in due[len(done) :]:
                if t.due is not None:
                    heapq.heappush(self._heap, (t.due, t.memory_id, t.revision))
            raise
        return RetentionReport(
            now=now, dry_run=False, due=done, accepted=counts["accepted"],
            rejected=counts["rejected"], duplicates=counts["duplicate"],
        )  # fmt: skip


def policy_retention(policy: Callable[[], PolicyState]) -> RetentionFor:
    """``retention_for`` over the store's governance rules: the retention of the namespace
    policy that applies (``memstream policy set``), or None."""

    def retention_for(namespace: str) -> RetentionPolicy | None:
        rule = policy().namespace_rule(namespace)
        if rule is None or (
            rule.expire_after_idle_days is None and rule.erase_after_expired_days is None
        ):
            return None
        return RetentionPolicy(
            expire_after_idle_days=rule.expire_after_idle_days,
            erase_after_expired_days=rule.erase_after_expired_days,
        )

    return retention_for
