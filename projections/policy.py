"""The governance projection: principals, tokens, grants and namespace policies, folded from
their events; and the one function that says whether a principal may do something.

Pure: :class:`PolicyState` is built by :meth:`PolicyState.apply` from decided governance
events in log order (:func:`decide` gives the verdict on one), and answers
:meth:`PolicyState.allows` / :meth:`PolicyState.missing` for the service's checks. Folding
the events up to an offset gives the rules as they stood then ("who could read this then").

The state is copy-on-write: a change makes new maps and swaps them in, so a reader that took
the maps once reads one consistent version while the appender changes the next.

Matching:

- an object ``user/alice`` selects that namespace; ``team/*`` the namespace ``team`` and
  every namespace below it; ``*`` every namespace; ``memory:<id>`` one memory;
- a grantee is a principal, ``group:<name>`` (the principal's groups) or ``*`` (every
  principal known to the store and not disabled);
- ``admin`` implies every other mode; a grant's conditions (app, purpose, session) must each
  equal the caller's call context; an expired grant (``expires_at`` past) allows nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from memstream.schemas.events import GOVERNANCE_NAMESPACE, GOVERNANCE_TYPES, PUBSUB_TYPES, Context
from memstream.schemas.memcube import Logged, Outcome

from . import subscriptions as pubsub
from .subscriptions import PublicationRule, SubscriptionRule

__all__ = [
    "GOVERNANCE_NAMESPACE",
    "GOVERNANCE_TYPES",
    "GrantRule",
    "NamespaceRule",
    "PermissionChange",
    "PolicyState",
    "PrincipalInfo",
    "Rules",
    "TokenInfo",
    "TokenView",
    "decide",
    "matches",
    "permission_changes",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MODES = ("read", "write", "audit", "reveal", "admin")

UNKNOWN_PRINCIPAL = "unknown_principal"
UNKNOWN_TOKEN = "unknown_token"
UNKNOWN_GRANT = "unknown_grant"
EXISTS = "exists"
NOT_GOVERNANCE = "governance_namespace"


class PrincipalInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    groups: tuple[str, ...] = ()
    disabled: bool = False
    created_at: datetime | None = None
    created_by: str = ""


class TokenView(msgspec.Struct, frozen=True, kw_only=True):
    """A token as the rules show it: never its hash."""

    token_id: str
    principal: str
    expires_at: datetime | None = None
    revoked: bool = False
    issued_at: datetime | None = None
    issued_by: str = ""


class TokenInfo(TokenView, frozen=True, kw_only=True):
    """A token as the rules keep it: with the argon2 hash of its secret."""

    hash: str


class GrantRule(msgspec.Struct, frozen=True, kw_only=True):
    grant_id: str
    to: str
    object: str
    modes: tuple[str, ...]
    app: str | None = None
    purpose: str | None = None
    session: str | None = None
    expires_at: datetime | None = None
    granted_at: datetime | None = None
    granted_by: str = ""
    reason: str | None = None

    def covers(self, mode: str) -> bool:
        return mode in self.modes or "admin" in self.modes

    def fits(self, context: Context, now: datetime | None) -> bool:
        """Whether a call in ``context`` at ``now`` meets the grant's conditions."""
        if self.expires_at is not None and now is not None and now >= self.expires_at:
            return False
        return (
            (self.app is None or self.app == context.app)
            and (self.purpose is None or self.purpose == context.purpose)
            and (self.session is None or self.session == context.session)
        )

    def describe(self) -> str:
        cond = [f"{k}={v}" for k in ("app", "purpose", "session") if (v := getattr(self, k))]
        when = f" when {', '.join(cond)}" if cond else ""
        return f"{'+'.join(self.modes)} on {self.object} to {self.to}{when}"


class NamespaceRule(msgspec.Struct, frozen=True, kw_only=True):
    policy_id: str
    object: str
    sensitive: str = "allow"
    expire_after_idle_days: int | None = None
    erase_after_expired_days: int | None = None


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """The rules in force at ``offset`` (the last governance event folded in), as the SDK,
    the HTTP API and the CLI show them."""

    offset: int
    principals: list[PrincipalInfo]
    grants: list[GrantRule]
    tokens: list[TokenView]
    policies: list[NamespaceRule]


def matches(obj: str, namespace: str | None, memory_id: str | None = None) -> bool:
    """Whether grant object ``obj`` selects ``namespace`` (or the memory ``memory_id``)."""
    if obj == "*":
        return namespace is not None or memory_id is not None
    if obj.startswith("memory:"):
        return memory_id is not None and obj[7:] == memory_id
    if namespace is None:
        return False
    if obj.endswith("/*"):
        base = obj[:-2]
        return namespace == base or namespace.startswith(base + "/")
    return namespace == obj


def specificity(obj: str) -> tuple[int, int]:
    """How specific an object is (a namespace over a pattern over ``*``; longer first)."""
    if obj == "*":
        return (0, 0)
    if obj.endswith("/*"):
        return (1, len(obj))
    return (2, len(obj))


@dataclass
class PolicyState:
    """The rules in force (see the module docstring). Built empty, then :meth:`apply`'d."""

    principals: dict[str, PrincipalInfo] = field(default_factory=dict)
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    grants: dict[str, GrantRule] = field(default_factory=dict)
    policies: dict[str, NamespaceRule] = field(default_factory=dict)
    #: subscriptions and publications (projections/subscriptions.py)
    subscriptions: dict[str, SubscriptionRule] = field(default_factory=dict)
    publications: dict[str, PublicationRule] = field(default_factory=dict)
    #: the offset of the last governance event folded in (-1: none)
    offset: int = -1
    #: principal → its grants (through its name, its groups and ``*``); rebuilt lazily
    _by_principal: dict[str, tuple[GrantRule, ...]] = field(default_factory=dict, repr=False)

    # -- folding ---------------------------------------------------------------------------

    @classmethod
    def fold(cls, rows: Iterable[tuple[int, str, str, str, int, dict]]) -> PolicyState:
        """The state after ``rows``: accepted governance events as (offset, type, name,
        actor, recorded_at, clear payload) in log order (what the core projection keeps)."""
        state = cls()
        for offset, type_, name, actor, recorded_at, body in rows:
            state.apply_fields(offset, type_, name, actor, recorded_at, body)
        return state

    def apply(self, logged: Logged, outcome: Outcome) -> None:
        """Fold one decided event (anything but an accepted governance event is ignored)."""
        ev = logged.event
        if ev.type not in GOVERNANCE_TYPES or not outcome.accepted:
            return
        self.apply_fields(
            logged.offset, ev.type, ev.memory_id, ev.actor, logged.recorded_at, body_of(ev)
        )

    def apply_fields(
        self, offset: int, type_: str, name: str, actor: str, recorded_at: int, body: dict
    ) -> None:
        at = _EPOCH + timedelta(microseconds=recorded_at)
        if type_ in PUBSUB_TYPES:
            self.subscriptions, self.publications = pubsub.apply(
                self.subscriptions, self.publications, offset, type_, name, actor, recorded_at,
                body,
            )  # fmt: skip
        elif type_ == "principal":
            old = self.principals.get(name)
            info = PrincipalInfo(
                name=name,
                kind=body.get("kind", "user"),
                groups=tuple(body.get("groups") or ()),
                disabled=bool(body.get("disabled", False)),
                created_at=old.created_at if old else at,
                created_by=old.created_by if old else actor,
            )
            self.principals = {**self.principals, name: info}
        elif type_ == "token_issue":
            token = TokenInfo(
                token_id=name,
                principal=body["principal"],
                hash=body["hash"],
                expires_at=_time(body.get("expires_at")),
                issued_at=at,
                issued_by=actor,
            )
            self.tokens = {**self.tokens, name: token}
        elif type_ == "token_revoke":
            old_token = self.tokens[name]
            self.tokens = {**self.tokens, name: msgspec.structs.replace(old_token, revoked=True)}
        elif type_ == "grant":
            when = body.get("when") or {}
            rule = GrantRule(
                grant_id=name,
                to=body["to"],
                object=body["object"],
                modes=tuple(body["modes"]),
                app=when.get("app"),
                purpose=when.get("purpose"),
                session=when.get("session"),
                expires_at=_time(body.get("expires_at")),
                granted_at=at,
                granted_by=actor,
                reason=body.get("reason"),
            )
            self.grants = {**self.grants, name: rule}
        elif type_ == "revoke":
            self.grants = {k: v for k, v in self.grants.items() if k != name}
        elif type_ == "policy":
            rule_ = NamespaceRule(
                policy_id=name,
                object=body["object"],
                sensitive=body.get("sensitive", "allow"),
                expire_after_idle_days=body.get("expire_after_idle_days"),
                erase_after_expired_days=body.get("erase_after_expired_days"),
            )
            self.policies = {**self.policies, name: rule_}
        self.offset = offset
        self._by_principal = {}

    def rules(self) -> Rules:
        """The public view of the state (tokens without their hashes)."""
        return Rules(
            offset=self.offset,
            principals=sorted(self.principals.values(), key=lambda p: p.name),
            grants=sorted(self.grants.values(), key=lambda g: (g.granted_at or _EPOCH, g.grant_id)),
            tokens=[
                TokenView(
                    token_id=t.token_id,
                    principal=t.principal,
                    expires_at=t.expires_at,
                    revoked=t.revoked,
                    issued_at=t.issued_at,
                    issued_by=t.issued_by,
                )  # fmt: skip
                for t in sorted(
                    self.tokens.values(), key=lambda t: (t.issued_at or _EPOCH, t.token_id)
                )
            ],
            policies=sorted(self.policies.values(), key=lambda r: r.object),
        )

    # -- asking ----------------------------------------------------------------------------

    def active(self, principal: str) -> bool:
        """Whether ``principal`` is known and not disabled."""
        p = self.principals.get(principal)
        return p is not None and not p.disabled

    def grants_of(self, principal: str) -> tuple[GrantRule, ...]:
        """Every grant that names ``principal``: directly, through a group, or ``*``."""
        cache = self._by_principal
        found = cache.get(principal)
        if found is None:
            p = self.principals.get(principal)
            if p is None or p.disabled:
                found = ()
            else:
                names = {principal, "*", *(f"group:{g}" for g in p.groups)}
                found = tuple(g for g in self.grants.values() if g.to in names)
            cache[principal] = found
        return found

    def allows(
        self,
        principal: str,
        mode: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
        context: Context = Context(),
        now: datetime | None = None,
    ) -> bool:
        """Whether ``principal`` may ``mode`` on ``namespace`` (or its memory
        ``memory_id``) in ``context`` at ``now``. Neither given: on the whole store (a grant
        on ``*``)."""
        for g in self.grants_of(principal):
            if not g.covers(mode) or not g.fits(context, now):
                continue
            if namespace is None and memory_id is None:
                if g.object == "*":
                    return True
            elif matches(g.object, namespace, memory_id):
                return True
        return False

    def readable(
        self,
        principal: str,
        namespaces: Iterable[str],
        *,
        mode: str = "read",
        context: Context = Context(),
        now: datetime | None = None,
    ) -> tuple[set[str], set[str]]:
        """Of ``namespaces``: the ones ``principal`` may ``mode`` whole; and the memories it
        may ``mode`` one by one (grants on ``memory:<id>``) wherever they live."""
        whole: set[str] = set()
        ones: set[str] = set()
        fitting = [g for g in self.grants_of(principal) if g.covers(mode) and g.fits(context, now)]
        for g in fitting:
            if g.object.startswith("memory:"):
                ones.add(g.object[7:])
        patterns = [g.object for g in fitting if not g.object.startswith("memory:")]
        if patterns:
            for ns in namespaces:
                if any(matches(o, ns) for o in patterns):
                    whole.add(ns)
        return whole, ones

    def everything(
        self, principal: str, mode: str, context: Context = Context(), now: datetime | None = None
    ) -> bool:
        """Whether ``principal`` may ``mode`` on every namespace (a grant on ``*``)."""
        return self.allows(principal, mode, context=context, now=now)

    def who(
        self,
        mode: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
        context: Context | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Every active principal that may ``mode`` on the object (``context`` None: in
        some call context, conditions ignored)."""
        out = []
        for name in sorted(self.principals):
            for g in self.grants_of(name):
                if not g.covers(mode):
                    continue
                if context is not None and not g.fits(context, now):
                    continue
                if context is None and g.expires_at is not None and now and now >= g.expires_at:
                    continue
                if matches(g.object, namespace, memory_id) or (
                    namespace is None and memory_id is None and g.object == "*"
                ):
                    out.append(name)
                    break
        return out

    def namespace_rule(self, namespace: str) -> NamespaceRule | None:
        """The policy that applies to ``namespace``: the most specific one selecting it."""
        best: NamespaceRule | None = None
        for rule in self.policies.values():
            if matches(rule.object, namespace) and (
                best is None or specificity(rule.object) > specificity(best.object)
            ):
                best = rule
        return best


def _time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return msgspec.convert(value, datetime)


def body_of(ev) -> dict:
    """A governance event's payload as plain data (from the payload, or its clear fields)."""
    if ev.payload is not None:
        return msgspec.to_builtins(ev.payload)
    return dict(ev.clear or {})


def _reject(logged: Logged, code: str, reason: str) -> Outcome:
    ev = logged.event
    return Outcome(
        offset=logged.offset, recorded_at=logged.recorded_at, event_id=ev.event_id,
        type=ev.type, namespace=ev.namespace, memory_id=ev.memory_id, status="rejected",
        code=code, reason=reason,
    )  # fmt: skip


def decide(policy: PolicyState, logged: Logged) -> Outcome:
    """The verdict on a governance event. Structural checks only: who may change the rules
    is the service's check, made before the event is appended."""
    ev = logged.event
    name = ev.memory_id
    if ev.namespace != GOVERNANCE_NAMESPACE:
        return _reject(
            logged,
            NOT_GOVERNANCE,
            f"a {ev.type} event belongs in namespace {GOVERNANCE_NAMESPACE}, not {ev.namespace}",
        )
    body = body_of(ev)
    if ev.type in PUBSUB_TYPES:
        why = pubsub.verdict(policy.subscriptions, policy.publications, ev.type, name, body)
        if why is not None:
            return _reject(logged, *why)
    elif ev.type == "token_issue":
        if not policy.active(body["principal"]):
            return _reject(
                logged,
                UNKNOWN_PRINCIPAL,
                f"principal {body['principal']} does not exist or is disabled; add it first",
            )
        if name in policy.tokens:
            return _reject(logged, EXISTS, f"token {name} already exists; issue a new id")
    elif ev.type == "token_revoke":
        if name not in policy.tokens:
            return _reject(logged, UNKNOWN_TOKEN, f"token {name} does not exist")
    elif ev.type == "grant":
        to = body["to"]
        if to != "*" and not to.startswith("group:") and to not in policy.principals:
            return _reject(
                logged, UNKNOWN_PRINCIPAL, f"principal {to} does not exist; add it first"
            )
        if name in policy.grants:
            return _reject(logged, EXISTS, f"grant {name} already exists; revoke it first")
    elif ev.type == "revoke":
        if name not in policy.grants:
            return _reject(logged, UNKNOWN_GRANT, f"grant {name} does not exist (or was revoked)")
    return Outcome(
        offset=logged.offset, recorded_at=logged.recorded_at, event_id=ev.event_id,
        type=ev.type, namespace=ev.namespace, memory_id=ev.memory_id, status="accepted",
    )  # fmt: skip


class PermissionChange(msgspec.Struct, frozen=True, kw_only=True):
    """One change of the rules, for the permission report: who changed what, for whom,
    when and why. ``change`` is the event type (grant, revoke, principal, token_issue,
    token_revoke, policy); ``target`` what it is about (a grant, principal, token or
    policy id). A revoke carries the grant it withdrew (``to``, ``modes``, ``object``)."""

    offset: int
    at: datetime
    actor: str
    change: str
    target: str
    to: str | None = None
    modes: list[str] = []
    object: str | None = None
    conditions: str | None = None
    expires_at: datetime | None = None
    detail: str | None = None
    reason: str | None = None


def permission_changes(
    rows: Iterable[tuple[int, str, str, str, int, dict]],
) -> list[PermissionChange]:
    """The permission report of accepted governance events (as the core projection keeps
    them, in log order): each change with what it changed."""
    grants: dict[str, dict] = {}
    out = []
    for offset, type_, name, actor, recorded_at, body in rows:
        at = _EPOCH + timedelta(microseconds=recorded_at)
        common = dict(offset=offset, at=at, actor=actor, change=type_, target=name,
                      reason=body.get("reason"))  # fmt: skip
        if type_ in ("grant", "revoke"):
            g = body if type_ == "grant" else grants.pop(name, {})
            if type_ == "grant":
                grants[name] = body
            when = g.get("when") or {}
            out.append(
                PermissionChange(
                    **common,
                    to=g.get("to"),
                    modes=list(g.get("modes") or ()),
                    object=g.get("object"),
                    expires_at=_time(g.get("expires_at")),
                    conditions=", ".join(f"{k}={v}" for k, v in when.items() if v) or None,
                )  # fmt: skip
            )
        elif type_ == "principal":
            groups = ", ".join(body.get("groups") or ())
            detail = f"{body.get('kind', 'user')}; groups: {groups or '-'}"
            out.append(PermissionChange(
                **common, to=name, detail=detail + ("; disabled" if body.get("disabled") else "")
            ))  # fmt: skip
        elif type_ == "token_issue":
            out.append(PermissionChange(**common, to=body.get("principal"),
                                        expires_at=_time(body.get("expires_at"))))  # fmt: skip
        elif type_ == "policy":
            detail = f"sensitive: {body.get('sensitive', 'allow')}"
            for key in ("expire_after_idle_days", "erase_after_expired_days"):
                if body.get(key) is not None:
                    detail += f"; {key.replace('_', ' ')}: {body[key]}"
            out.append(PermissionChange(**common, object=body.get("object"), detail=detail))
        else:
            out.append(PermissionChange(**common))
    return out
