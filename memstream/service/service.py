"""The memory service: every operation and every read, once, for every face.

The embedded SDK (:class:`memstream.MemoryStore`), ``memstream serve`` and every Kafka
worker's HTTP API call this class, with a :class:`Caller`; it runs them on a
:class:`~memstream.service.backend.Backend` (the embedded runtime, or a worker's shards).
Every entry point passes :meth:`MemoryService.authorize` first: the one place where access
control goes. Every read that succeeds is then recorded in the access log, when one is kept
(:meth:`MemoryService._accessed`; :mod:`memstream.governance.access_log`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from memstream import validation as check
from memstream.errors import BadRequest, Forbidden, MalformedEvent, Unsupported
from memstream.governance import tokens
from memstream.governance.access import ACTION_MODES, AccessControl
from memstream.governance.access_log import (
    AccessLog,
    AccessPage,
    AccessQuery,
    checked_query,
    export_format,
)
from memstream.governance.methods import PRESETS
from memstream.governance.screening import screen
from memstream.governance.sensitive import default_scanner
from memstream.operations import Operations, new_id, raise_rejections
from memstream.projections.policy import (
    PermissionChange,
    PolicyState,
    Rules,
    body_of,
    matches,
    permission_changes,
)
from memstream.projections.processor import Decided
from memstream.projections.search import SearchQuery, in_scope
from memstream.queries import LIST_STATES, AuditQuery, ListQuery, Point
from memstream.schemas import events as ev
from memstream.schemas.events import (
    GOVERNANCE_NAMESPACE,
    GOVERNANCE_TYPES,
    PUBSUB_TYPES,
    Context,
    Event,
)
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.streams.log import ChainBreak

from .backend import Backend
from .caller import Caller
from .pubsub import PubSubMethods

if TYPE_CHECKING:
    from memstream.governance.retention import RetentionReport

__all__ = ["ACTIONS", "MemoryService"]

#: What a caller may be allowed to do (the ``action`` of :meth:`MemoryService.authorize`).
ACTIONS = tuple(ACTION_MODES)
_VECTOR_TYPES = ("create", "revise", "merge")
_NO_CONTEXT = Context()


class MemoryService(PubSubMethods):
    """Writes (events in, outcomes out) and reads (get, history, audit, search) over one
    backend, each checked by :meth:`authorize`."""

    def __init__(self, backend: Backend, accesses: AccessLog | None = None):
        self.backend = backend
        self.codec = backend.codec
        self.access = AccessControl(lambda: self.backend.policy())
        #: The access log every read that succeeds is recorded in (None: none kept).
        self.accesses = accesses

    # -- access --------------------------------------------------------------------------------

    def authorize(
        self,
        caller: Caller,
        action: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
    ) -> None:
        """Allow ``caller`` to do ``action`` (one of :data:`ACTIONS`) on ``namespace`` /
        ``memory_id`` (neither: on the whole store), or raise :class:`Forbidden` naming the
        grant it lacks (memstream/governance/access.py). Every entry point calls this. A
        refusal is recorded in the access log (who, what, the grant missing)."""
        try:
            self.access.check(caller, action, namespace=namespace, memory_id=memory_id)
        except Forbidden as e:
            self._denied(caller, action, e, namespace=namespace, memory_id=memory_id)
            raise

    def _denied(
        self,
        caller: Caller,
        action: str,
        e: Forbidden,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
    ) -> None:
        if self.accesses is not None:
            self.accesses.record(
                caller, "denied", [namespace] if namespace else (),
                [memory_id] if memory_id else (), {"action": action, "missing": e.missing},
            )  # fmt: skip

    def _recorded(self, caller: Caller, action: str, namespace: str | None, **detail: Any) -> None:
        """Record a read that returns no memories one by one (an export, a report)."""
        if self.accesses is not None:
            clean = {k: v for k, v in detail.items() if v is not None}
            self.accesses.record(caller, action, [namespace] if namespace else (), (), clean)

    def _authorize_read(self, caller: Caller, memory_id: str, namespace: str | None) -> None:
        """The check of a read of one memory: read on its namespace (or on it). A memory the
        log never held has nothing to protect: any principal learns it is not there (as it
        would learn from a refusal that it is)."""
        where = self._namespace_of(caller, memory_id, namespace)
        if caller.enforced and where is None:
            self.authorize(caller, "status")
        else:
            self.authorize(caller, "read", namespace=where, memory_id=memory_id)

    def _namespace_of(self, caller: Caller, memory_id: str, namespace: str | None) -> str | None:
        """The namespace a check of ``memory_id`` is about: the one named, else the one the
        memory lives in (None: unknown)."""
        if namespace is not None or not caller.enforced:
            return namespace
        placed = self.backend.placement(memory_id)
        return placed[0] if placed is not None else None

    # -- writes --------------------------------------------------------------------------------

    def append(self, caller: Caller, events: Sequence[Event]) -> list[Outcome]:
        """Append validated events (all or none); one outcome per event, rejections
        included (a rejected event is appended and audited too)."""
        events = self._stamped(caller, events)
        for e in events:
            if e.type in GOVERNANCE_TYPES:
                self._authorize_governance(caller, e)
            else:
                self.authorize(caller, "write", namespace=e.namespace, memory_id=e.memory_id)
        policy = self.backend.policy()
        if policy.policies:  # namespace policies may ask for sensitive content to be screened
            events = screen(events, policy, default_scanner, self._current_content)
        self._check_vectors(events)
        return self.backend.append(events)

    def _current_content(self, memory_id: str) -> tuple[list[str], dict[str, Any]] | None:
        """A memory's current tags and metadata, as decided (what a revise that keeps them
        keeps)."""
        m = self.backend.decided(memory_id)
        return (list(m.tags), dict(m.metadata)) if m is not None else None

    def publish_json(self, caller: Caller, data: bytes | str) -> list[Outcome]:
        """Append wire JSON: one event object or an array of them (decoded and validated
        here; a malformed one refuses the batch with :class:`MalformedEvent`)."""
        return self.append(caller, self.codec.decode(data))

    def operations(self, caller: Caller, namespace: str | None = None) -> Operations:
        """The operation methods (``create``, ``revise``, ``archive``, ``erase``, ...) as
        ``caller``: each builds its event here, server-side, and appends it through
        :meth:`append` (so it is stamped and authorized like any other). ``namespace``
        tells a backend that needs it (a Kafka worker) where existing memories live."""
        return _CallerOperations(self, caller, namespace)

    def _stamped(self, caller: Caller, events: Sequence[Event]) -> list[Event]:
        """A remote caller's events, with its principal as actor and its call context where
        an event names none (a local caller's events are written as built)."""
        if not (caller.remote or caller.enforced):
            return list(events)
        out = []
        for e in events:
            changes: dict[str, Any] = {}
            if (caller.identified or caller.enforced) and e.actor != caller.principal:
                changes["actor"] = caller.principal
            if e.context == _NO_CONTEXT and caller.context != _NO_CONTEXT:
                changes["context"] = caller.context
            out.append(msgspec.structs.replace(e, **changes) if changes else e)
        return out

    def _check_vectors(self, events: Sequence[Event]) -> None:
        """Refuse producer vectors of the wrong dimension before anything is appended."""
        vectors = [
            (i, e, v)
            for i, e in enumerate(events)
            if e.type in _VECTOR_TYPES and (v := getattr(e.payload, "vector", None)) is not None
        ]
        fits = self.backend.vector_dim() if vectors else None
        if fits is None:
            return
        dim, model_id = fits
        for i, e, vector in vectors:
            if len(vector) != dim:
                raise MalformedEvent(
                    f"memory {e.memory_id}: vector has {len(vector)} dimensions, the store's "
                    f"embedding model {model_id!r} has {dim}; send "
                    f"{dim} floats, or no vector to have the text embedded",
                    field="$.payload.vector",
                    index=i if len(events) > 1 else None,
                )

    # -- reads ---------------------------------------------------------------------------------

    def _accessed(self, caller: Caller, action: str, result: Any, **asked: Any) -> Any:
        """Record a read that succeeded (``result``, asked with ``asked``) in the access log;
        ``result``, to return."""
        if self.accesses is not None:
            self.accesses.read(caller, action, result, asked, self.backend)
        return result

    def get(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None = None,
        version: int | None = None,
        as_of: Point | None = None,
        min_offset: int | None = None,
    ) -> Memory | None:
        """A memory now, at ``version``, or as of a time or an offset; None if unknown."""
        memory_id = check.text(memory_id, "memory_id", optional=False)
        namespace = check.text(namespace, "namespace")
        version = check.integer(version, "version", minimum=1)
        as_of = check.point(as_of, "as_of")
        min_offset = check.integer(min_offset, "min_offset")
        self._authorize_read(caller, memory_id, namespace)
        memory = self.backend.get(
            caller, memory_id, namespace=namespace, version=version, as_of=as_of,
            min_offset=min_offset,
        )  # fmt: skip
        return self._accessed(caller, "get", memory, memory_id=memory_id, namespace=namespace,
                              version=version, as_of=as_of)  # fmt: skip

    def history(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None = None,
        include_parents: bool = True,
        as_of: Point | None = None,
        min_offset: int | None = None,
    ) -> list[Version]:
        """The version chain, oldest first, with merge parents' chains."""
        memory_id = check.text(memory_id, "memory_id", optional=False)
        namespace = check.text(namespace, "namespace")
        include_parents = check.boolean(include_parents, "include_parents")
        as_of = check.point(as_of, "as_of")
        min_offset = check.integer(min_offset, "min_offset")
        self._authorize_read(caller, memory_id, namespace)
        history = self.backend.history(
            caller, memory_id, namespace=namespace, include_parents=include_parents,
            as_of=as_of, min_offset=min_offset,
        )  # fmt: skip
        if caller.enforced and include_parents:
            # A merge's parents may live where the caller cannot read: their versions stay out.
            allowed = self.access.allowed
            history = [
                v for v in history
                if v.memory_id == memory_id
                or allowed(caller, "read",
                           namespace=self._namespace_of(caller, v.memory_id, None),
                           memory_id=v.memory_id)
            ]  # fmt: skip
        return self._accessed(caller, "history", history, memory_id=memory_id,
                              namespace=namespace, include_parents=include_parents,
                              as_of=as_of)  # fmt: skip

    def list_memories(
        self, caller: Caller, q: ListQuery, *, min_offset: int | None = None
    ) -> MemoryPage:
        """Memories at their current version, in creation order, a page at a time."""
        if not isinstance(q, ListQuery):
            raise BadRequest(f"expected a ListQuery, not {type(q).__name__}")
        states = check.strings(q.states, "states")
        q = dataclasses.replace(
            q,
            namespace=check.text(q.namespace, "namespace"),
            states=tuple(states) if states is not None else LIST_STATES,
            tags=tuple(check.strings(q.tags, "tags") or ()),
            after=check.integer(q.after, "after", minimum=-1),
            limit=check.integer(q.limit, "limit", optional=False, minimum=1, maximum=10_000),
        )
        min_offset = check.integer(min_offset, "min_offset")
        # a named namespace is the only one the page can hold: the scope is computed over it
        named = {q.namespace} if q.namespace is not None else self.backend.namespaces()
        scope = self.access.scope(caller, named)
        if scope is not None and (q.namespace is None or q.namespace not in scope[0]):
            if not scope[1] and q.namespace is not None:
                self.authorize(caller, "read", namespace=q.namespace)
            # Partly readable: the page keeps what the caller may read (its cursor moves on
            # over the rest, so no page reveals what it dropped but by its length).
            page = self.backend.list_memories(caller, q, min_offset=min_offset)
            kept = [m for m in page.memories if in_scope(m, scope)]
            page = msgspec.structs.replace(page, memories=kept)
        else:
            page = self.backend.list_memories(caller, q, min_offset=min_offset)
        return self._accessed(caller, "list", page, query=q)

    def audit(
        self,
        caller: Caller,
        q: AuditQuery,
        *,
        partition: int | None = None,
        min_offset: int | None = None,
    ) -> AuditPage:
        """Audit entries in log order (``partition``: a whole partition's)."""
        q = _audit_query(q)
        partition = check.integer(partition, "partition")
        min_offset = check.integer(min_offset, "min_offset")
        if partition is not None:
            self.authorize(caller, "audit")
        else:
            namespace = q.namespace
            if namespace is None and q.memory_id is not None:
                namespace = self._namespace_of(caller, q.memory_id, None)
            self.authorize(caller, "audit", namespace=namespace, memory_id=q.memory_id)
        page = self.backend.audit(caller, q, partition=partition, min_offset=min_offset)
        return self._accessed(caller, "audit", page, query=q, partition=partition)

    def search(
        self,
        caller: Caller,
        q: SearchQuery,
        *,
        min_offset: int | None = None,
        partitions: list[int] | None = None,
    ) -> list[SearchHit]:
        """``q``'s hits, best first (``partitions``: between workers, which to search)."""
        q = _search_query(q)
        min_offset = check.integer(min_offset, "min_offset")
        if partitions is not None:
            if not isinstance(partitions, list | tuple):
                raise BadRequest("partitions must be a list of integers", field="partitions")
            partitions = [
                check.integer(p, f"partitions[{i}]", optional=False)
                for i, p in enumerate(partitions)
            ]
        scoped = self._scoped(caller, q)
        if scoped is None:
            return self._accessed(caller, "search", [], query=q)
        hits = self.backend.search(caller, scoped, min_offset=min_offset, partitions=partitions)
        return self._accessed(caller, "search", hits, query=q)

    def access_log(self, caller: Caller, q: AccessQuery) -> AccessPage:
        """A page of the access log (who read what), oldest first: auditor access."""
        q = checked_query(q)
        self.authorize(caller, "audit")
        page = self._access_log_kept().query(q)
        return self._accessed(caller, "access_log", page, query=q)

    def export_access_log(
        self, caller: Caller, q: AccessQuery, format: str = "jsonl"
    ) -> Iterator[str]:
        """The access records matching ``q`` as JSON Lines or CSV text, a page at a time
        (checked and authorized here, before the first is read): auditor access."""
        q, format = checked_query(q), export_format(format)
        self.authorize(caller, "audit")
        chunks = self._access_log_kept().export(q, format)
        self._accessed(caller, "access_log_export", None, query=q, format=format)
        return chunks

    def _access_log_kept(self) -> AccessLog:
        if self.accesses is None:
            raise Unsupported(
                "no access log is kept here (a store opened with access_log=False or "
                "$MEMSTREAM_ACCESS_LOG_ENABLED=0, or a Kafka worker); open the store with the "
                "access log enabled"
            )
        return self.accesses

    def _scoped(self, caller: Caller, q: SearchQuery) -> SearchQuery | None:
        """``q`` limited to what ``caller`` may read (None: nothing at all). The limit is a
        filter of the search itself: what the caller may not read is never scored, counted
        or returned."""
        # the namespaces a query names bound it: its scope is computed over them (every one
        # of the store's otherwise; on Kafka, those every worker reports)
        named = q.namespaces if q.namespaces is not None else self.backend.namespaces()
        scope = self.access.scope(caller, named)
        if scope is None:
            return dataclasses.replace(q, scope=None)
        whole, ones = scope
        if q.namespaces is not None:
            whole = whole & frozenset(q.namespaces)
        if not ones:
            return dataclasses.replace(q, namespaces=sorted(whole), scope=None) if whole else None
        return dataclasses.replace(q, scope=(whole, ones))

    # -- governance ----------------------------------------------------------------------------

    def _authorize_governance(self, caller: Caller, e: Event) -> None:
        """Who may append a governance event: an admin over what it is about; a principal
        may also issue and revoke its own tokens (rotation)."""
        if e.type in PUBSUB_TYPES:
            return self._authorize_pubsub(caller, e)
        if not caller.enforced:
            return self.authorize(caller, "govern")
        policy = self.backend.policy()
        body = body_of(e)
        if e.type == "token_issue" and body.get("principal") == caller.principal:
            return self.authorize(caller, "status")
        if e.type == "token_revoke":
            token = policy.tokens.get(e.memory_id)
            if token is not None and token.principal == caller.principal:
                return self.authorize(caller, "status")
        if e.type in ("grant", "policy"):
            obj = body["object"]
            placed = self.backend.placement(obj[7:]) if obj.startswith("memory:") else None
            return self._check_admin_over(caller, obj, placed[0] if placed else None)
        if e.type == "revoke":
            rule = policy.grants.get(e.memory_id)
            if rule is not None:
                obj = rule.object
                placed = self.backend.placement(obj[7:]) if obj.startswith("memory:") else None
                return self._check_admin_over(caller, obj, placed[0] if placed else None)
        self.authorize(caller, "govern")

    def _check_admin_over(self, caller: Caller, obj: str, namespace: str | None) -> None:
        try:
            self.access.check_admin_over(caller, obj, namespace=namespace)
        except Forbidden as e:
            self._denied(caller, "govern", e, namespace=namespace)
            raise

    def _govern(self, caller: Caller, type_: str, name: str, payload: dict[str, Any]) -> Outcome:
        """Append one governance event as ``caller``; a rejection raises."""
        ops = self.operations(caller)
        # Times were checked (aware datetimes): as RFC 3339; anything else is checked as
        # wire input is, by the event's builder (MalformedEvent naming the field).
        payload = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in payload.items()}
        event = ops.event(type_, GOVERNANCE_NAMESPACE, name, payload)
        return raise_rejections(self.append(caller, [event]), True)[0]

    def set_principal(
        self,
        caller: Caller,
        name: str,
        *,
        kind: str = "user",
        groups: Sequence[str] = (),
        disabled: bool = False,
        reason: str | None = None,
    ) -> Outcome:
        """Add principal ``name``, or change its kind, groups or whether it is disabled."""
        return self._govern(
            caller, "principal", check.text(name, "name", optional=False),
            {"kind": kind, "groups": list(check.strings(groups, "groups") or ()),
             "disabled": check.boolean(disabled, "disabled"), "reason": reason},
        )  # fmt: skip

    def issue_token(
        self,
        caller: Caller,
        principal: str,
        *,
        expires_at: Any = None,
        reason: str | None = None,
    ) -> tuple[str, str]:
        """A new API token for ``principal``: ``(token id, token)``. The token is returned
        this once; the log keeps only a salted hash of it."""
        principal = check.text(principal, "principal", optional=False)
        expires_at = check.time(expires_at, "expires_at")
        token_id, token = tokens.new_token()
        self._govern(
            caller, "token_issue", token_id,
            {"principal": principal, "hash": tokens.hash_secret(token),
             "expires_at": expires_at, "reason": reason},
        )  # fmt: skip
        return token_id, token

    def revoke_token(self, caller: Caller, token_id: str, *, reason: str | None = None) -> Outcome:
        """Revoke a token by its id (``tok-...``, the part of the token before its secret)."""
        token_id = check.text(token_id, "token_id", optional=False)
        return self._govern(caller, "token_revoke", token_id, {"reason": reason})

    def grant(
        self,
        caller: Caller,
        to: str,
        modes: Sequence[str],
        object: str,
        *,
        app: str | None = None,
        purpose: str | None = None,
        session: str | None = None,
        expires_at: Any = None,
        reason: str | None = None,
        grant_id: str | None = None,
    ) -> tuple[str, Outcome]:
        """Grant ``to`` (a principal, ``group:<name>`` or ``*``) ``modes`` on ``object``;
        ``(grant id, outcome)``. ``modes`` may name a preset: ``read-only`` (read),
        ``shared`` (read, write), ``private`` (read, write, reveal: give it to the one
        principal whose namespace it is)."""
        modes = list(check.strings(modes, "modes") or ())
        expanded: list[str] = []
        for m in modes:
            expanded.extend(PRESETS.get(m, (m,)))
        grant_id = check.text(grant_id, "grant_id") or "grant-" + new_id()
        when = {k: v for k, v in (("app", app), ("purpose", purpose), ("session", session)) if v}
        outcome = self._govern(
            caller, "grant", grant_id,
            {"to": to, "object": object, "modes": list(dict.fromkeys(expanded)), "when": when,
             "expires_at": check.time(expires_at, "expires_at"), "reason": reason},
        )  # fmt: skip
        return grant_id, outcome

    def revoke(self, caller: Caller, grant_id: str, *, reason: str | None = None) -> Outcome:
        """Withdraw a grant."""
        grant_id = check.text(grant_id, "grant_id", optional=False)
        return self._govern(caller, "revoke", grant_id, {"reason": reason})

    def set_policy(
        self,
        caller: Caller,
        object: str,
        *,
        sensitive: str = "allow",
        expire_after_idle_days: int | None = None,
        erase_after_expired_days: int | None = None,
        reason: str | None = None,
    ) -> Outcome:
        """Set the policy of the namespaces ``object`` selects (one policy per object)."""
        object = check.text(object, "object", optional=False)
        policy_id = "policy-" + hashlib.sha256(object.encode()).hexdigest()[:16]
        return self._govern(
            caller, "policy", policy_id,
            {"object": object, "sensitive": sensitive,
             "expire_after_idle_days": expire_after_idle_days,
             "erase_after_expired_days": erase_after_expired_days, "reason": reason},
        )  # fmt: skip

    def rules(self, caller: Caller, as_of: Point | None = None) -> Rules:
        """The rules in force (``as_of``: as they stood then). An auditor's read (audit on
        the whole store); a principal without it sees only its own principal and grants."""
        as_of = check.point(as_of, "as_of")
        auditor = self.access.allowed(caller, "audit")
        if not auditor:
            self.authorize(caller, "status")
        policy = self.backend.policy() if as_of is None else self.backend.policy_at(as_of)
        if auditor:
            return policy.rules()
        mine = PolicyState(
            principals={k: v for k, v in policy.principals.items() if k == caller.principal},
            grants={g.grant_id: g for g in policy.grants_of(caller.principal)},
            tokens={k: t for k, t in policy.tokens.items() if t.principal == caller.principal},
            offset=policy.offset,
        )
        return mine.rules()

    def who_can(
        self,
        caller: Caller,
        mode: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
        as_of: Point | None = None,
    ) -> list[str]:
        """The principals that may ``mode`` on a namespace or a memory, now or ``as_of``
        (grants' call-context conditions aside): an auditor's question."""
        namespace = check.text(namespace, "namespace")
        memory_id = check.text(memory_id, "memory_id")
        if mode not in ACTION_MODES.values():
            raise BadRequest(
                f"mode must be one of read, write, audit, reveal, admin, not {mode!r}", "mode"
            )
        if memory_id is not None and namespace is None:
            placed = self.backend.placement(memory_id)
            namespace = placed[0] if placed else None
        self.authorize(caller, "audit", namespace=namespace, memory_id=memory_id)
        as_of = check.point(as_of, "as_of")
        policy = self.backend.policy() if as_of is None else self.backend.policy_at(as_of)
        return policy.who(mode, namespace=namespace, memory_id=memory_id)

    def run_retention(
        self, caller: Caller, *, now: datetime | str | None = None, dry_run: bool = False
    ) -> RetentionReport:
        """One pass of the retention scheduler now (or as if it were ``now``): an
        ``expire``/``erase`` for every memory whose rule is due (``dry_run``: listed only)."""
        now = check.time(now, "now")
        dry_run = check.boolean(dry_run, "dry_run")
        self.authorize(caller, "retention")
        return self.backend.run_retention(now, dry_run)

    def reveal(
        self, caller: Caller, memory_id: str, *, version: int | None = None
    ) -> Memory | None:
        """A memory (now, or at ``version``) as it was written, before its namespace's
        policy redacted it: its original text, tags and metadata, read from the sealed
        event (a ``reveal`` grant on it). A memory that was not redacted reads as it is."""
        memory_id = check.text(memory_id, "memory_id", optional=False)
        version = check.integer(version, "version", minimum=1)
        where = self._namespace_of(caller, memory_id, None)
        self.authorize(caller, "reveal", namespace=where, memory_id=memory_id)
        m = self.backend.get(
            caller, memory_id, namespace=None, version=version, as_of=None, min_offset=None
        )
        if m is not None:
            original = self.backend.original(memory_id, m.version)
            if original is not None:
                m = msgspec.structs.replace(
                    m, text=original.text, tags=list(original.tags or ()),
                    metadata=dict(original.metadata or {}),
                )  # fmt: skip
        return self._accessed(caller, "reveal", m, memory_id=memory_id, namespace=where)

    def audit_records(self, caller: Caller, q: AuditQuery) -> Iterator[AuditEntry]:
        """Every audit entry ``q`` selects, page after page (an export): checked once, like
        :meth:`audit`, then read a page at a time."""
        q = _audit_query(q)
        namespace = q.namespace
        if namespace is None and q.memory_id is not None:
            namespace = self._namespace_of(caller, q.memory_id, None)
        self.authorize(caller, "audit", namespace=namespace, memory_id=q.memory_id)
        self._recorded(
            caller, "audit_export", namespace, memory_id=q.memory_id, actor=q.actor,
            since=q.since.isoformat() if q.since else None,
            until=q.until.isoformat() if q.until else None,
        )  # fmt: skip
        return self._pages(caller, q)

    def _pages(self, caller: Caller, q: AuditQuery) -> Iterator[AuditEntry]:
        while True:
            page = self.backend.audit(caller, q, partition=None, min_offset=None)
            yield from page.entries
            if page.next_after is None:
                return
            q = dataclasses.replace(q, after=page.next_after)

    def permission_changes(
        self,
        caller: Caller,
        *,
        since: Any = None,
        until: Any = None,
        principal: str | None = None,
        namespace: str | None = None,
    ) -> list[PermissionChange]:
        """The permission report: who granted, revoked, added, issued or set what, for whom,
        when and why (``principal``: changes for or by it; ``namespace``: grants and
        policies whose object selects it). Audit on the namespace, or on the store."""
        since, until = check.time(since, "since"), check.time(until, "until")
        principal = check.text(principal, "principal")
        namespace = check.text(namespace, "namespace")
        self.authorize(caller, "audit", namespace=namespace)
        self._recorded(caller, "permissions", namespace, principal=principal)
        out = []
        for c in permission_changes(self.backend.governance_log()):
            if (since is not None and c.at < since) or (until is not None and c.at > until):
                continue
            if principal is not None and principal not in (c.actor, c.to, c.target):
                continue
            if namespace is not None and (c.object is None or not matches(c.object, namespace)):
                continue
            out.append(c)
        return out

    # -- the log and the process ----------------------------------------------------------------

    def verify(
        self, caller: Caller, progress: Callable[[int], None] | None = None
    ) -> ChainBreak | None:
        """Recompute the log's hash chain; the first record that breaks it, or None."""
        check.callback(progress, "progress")
        self.authorize(caller, "verify")
        return self.backend.verify(progress)

    def follow(
        self, caller: Caller, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> Iterator[list[Decided]]:
        """Batches of decided events (event, outcome) from offset ``start`` on: the history,
        then live, woken by each commit; it ends when the store closes, or after ``idle``
        seconds with nothing new. Reading every event is an audit of the whole store."""
        _follow_args(start, batch, idle)
        self.authorize(caller, "audit")
        batches = self.backend.feed().follow(start, batch=batch, idle=idle)
        return self._accessed(caller, "follow", batches, start=start)

    def follow_async(
        self, caller: Caller, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> AsyncIterator[list[Decided]]:
        """:meth:`follow` for asyncio."""
        _follow_args(start, batch, idle)
        self.authorize(caller, "audit")
        batches = self.backend.feed().follow_async(start, batch=batch, idle=idle)
        return self._accessed(caller, "follow", batches, start=start)

    def flush(self, caller: Caller, timeout: float | None = None) -> None:
        """Wait until everything appended is projected (``timeout``: at most that long)."""
        self.authorize(caller, "status")
        timeout = check.number(timeout, "timeout", minimum=0.0, maximum=1e9)
        self.backend.flush(timeout)

    def checkpoint(self, caller: Caller) -> dict[str, Any]:
        """Bring every file of the store in line with the log now: projections caught up
        and persisted, and nothing of any memory erased so far left on disk."""
        self.authorize(caller, "checkpoint")
        return self.backend.checkpoint()

    def head(self, caller: Caller) -> int:
        """The last offset in the log (-1: empty)."""
        self.authorize(caller, "status")
        return self.backend.head()

    def health(self, caller: Caller) -> dict[str, Any]:
        """The process is up: pid, version, and what it serves."""
        self.authorize(caller, "status")
        return self.backend.health()

    def ready(self, caller: Caller) -> tuple[bool, dict[str, Any]]:
        """Whether reads and writes are served now, with the offsets and lag that say so."""
        self.authorize(caller, "status")
        return self.backend.ready()

    def status(self, caller: Caller, *, cluster: bool = False) -> dict[str, Any]:
        """Offsets and lag per partition served (``cluster``: of every worker)."""
        self.authorize(caller, "status")
        return self.backend.status(caller, cluster)

    def backup(self, caller: Caller, dest: Path) -> dict[str, Any]:
        """A consistent copy of the log and keys in ``dest`` (a new or empty directory)."""
        dest = check.path(dest, "dest")
        self.authorize(caller, "backup")
        return _writing("backup", "dest", dest, lambda: self.backend.backup(dest))

    def replay_copy(self, caller: Caller, into: Path, to: Point | None = None) -> dict[str, Any]:
        """The log up to ``to`` (inclusive) copied into a new read-only store ``into``."""
        into = check.path(into, "into")
        to = check.point(to, "to")
        self.authorize(caller, "replay")
        return _writing("replay", "into", into, lambda: self.backend.replay_copy(into, to))


class _CallerOperations(Operations):
    """:class:`Operations` bound to a service and a caller (see
    :meth:`MemoryService.operations`)."""

    def __init__(self, service: MemoryService, caller: Caller, namespace: str | None):
        self.service, self.caller, self.namespace = service, caller, namespace
        self.actor = caller.principal
        self.codec = service.codec
        self.registry: ev.Registry = service.codec.registry

    def append(self, events: Sequence[Any], *, raise_on_reject: bool = False) -> list[Outcome]:
        """Append events built by :meth:`event` (validated there); wire input goes through
        :meth:`MemoryService.publish_json`."""
        outcomes = self.service.append(self.caller, events)
        return raise_rejections(outcomes, raise_on_reject)

    def _built(self, event: Event) -> None:
        self.codec.check_size(len(msgspec.json.encode(event.payload)))

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        placement = getattr(self.service.backend, "placement", None)
        if placement is not None:
            return placement(memory_id)
        m = self.service.get(self.caller, memory_id, namespace=self.namespace)
        return (m.namespace, m.subject) if m is not None else None


def _writing(what: str, field: str, path: Path, copy: Callable[[], Any]) -> Any:
    """``copy()``; a path that cannot be written (not a directory, no permission) is a
    :class:`BadRequest` naming the field; a non-empty one stays a FileExistsError."""
    try:
        return copy()
    except FileExistsError:
        raise
    except OSError as e:
        raise BadRequest(f"cannot write the {what} to {path}: {e}", field=field) from None


def _follow_args(start: Any, batch: Any, idle: Any) -> None:
    if isinstance(start, int) and not isinstance(start, bool) and start < 0:
        raise BadRequest(f"start must be an offset >= 0, not {start}", field="start")
    check.integer(start, "start", optional=False)
    check.integer(batch, "batch", optional=False, minimum=1, maximum=1_000_000)
    check.number(idle, "idle", minimum=0.0, maximum=1e9)


def _audit_query(q: AuditQuery) -> AuditQuery:
    """``q`` with every filter checked (a time given as RFC 3339 text parsed)."""
    if not isinstance(q, AuditQuery):
        raise BadRequest(f"expected an AuditQuery, not {type(q).__name__}")
    return dataclasses.replace(
        q,
        namespace=check.text(q.namespace, "namespace"),
        memory_id=check.text(q.memory_id, "memory_id"),
        actor=check.text(q.actor, "actor"),
        type=check.text(q.type, "type"),
        status=check.text(q.status, "status"),
        since=check.time(q.since, "since"),
        until=check.time(q.until, "until"),
        after=check.integer(q.after, "after", minimum=-1),
        as_of=check.point(q.as_of, "as_of"),
        limit=check.integer(q.limit, "limit", optional=False, minimum=1, maximum=10_000),
    )


def _search_query(q: SearchQuery) -> SearchQuery:
    """``q`` with every parameter checked (times given as RFC 3339 text parsed)."""
    if not isinstance(q, SearchQuery):
        raise BadRequest(f"expected a SearchQuery, not {type(q).__name__}")
    if q.query is None and q.vector is None:
        raise BadRequest("search needs query= (text) or vector= (a query vector)", "query")
    return dataclasses.replace(
        q,
        query=check.text(q.query, "query"),
        vector=check.vector(q.vector, "vector"),
        namespaces=check.strings(q.namespaces, "namespaces"),
        k=check.integer(q.k, "k", optional=False, minimum=1, maximum=1000),
        tags_any=check.strings(q.tags_any, "tags_any"),
        tags_all=check.strings(q.tags_all, "tags_all"),
        states=check.strings(q.states, "states"),
        kinds=check.strings(q.kinds, "kinds"),
        created_after=check.time(q.created_after, "created_after"),
        created_before=check.time(q.created_before, "created_before"),
        updated_after=check.time(q.updated_after, "updated_after"),
        updated_before=check.time(q.updated_before, "updated_before"),
        metadata=check.mapping(q.metadata, "metadata"),
        include_archived=check.boolean(q.include_archived, "include_archived"),
        as_of=check.point(q.as_of, "as_of"),
        exact=check.boolean(q.exact, "exact"),
        alpha=check.number(q.alpha, "alpha", minimum=0.0, maximum=1.0),  # None: the default
    )
