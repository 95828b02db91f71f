"""The governance methods of the SDK: principals, tokens, grants, namespace policies, and
the questions an auditor asks of them.

:class:`Governance` declares them once; the embedded store runs them on its service
(:class:`EmbeddedGovernance`), the HTTP client sends them to ``/v1/principals``,
``/v1/tokens``, ``/v1/grants``, ``/v1/policies``, ``/v1/rules`` and ``/v1/who-can``
(:mod:`memstream.client.governance`). Every one is checked by the service: changing the
rules takes ``admin`` over what they are about; a principal may issue and revoke its own
tokens; reading them takes ``audit`` on the whole store (without it, a principal sees its
own).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from memstream.projections.policy import PermissionChange, Rules
from memstream.queries import AuditQuery, Point
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, Memory

from .export import check_format, lines, write_export

__all__ = ["PRESETS", "EmbeddedGovernance", "Governance"]

#: Grant presets: the modes each names.
PRESETS = {
    "read-only": ("read",),
    "shared": ("read", "write"),
    "private": ("read", "write", "reveal"),
}


class Governance(abc.ABC):
    """Principals, tokens, grants and policies (see the module docstring)."""

    @abc.abstractmethod
    def add_principal(
        self,
        name: str,
        *,
        kind: str = "user",
        groups: Sequence[str] = (),
        disabled: bool = False,
        reason: str | None = None,
    ) -> Outcome:
        """Add principal ``name`` (``kind``: user, agent or service), or change its kind,
        its groups (replaced) or whether it is disabled (its tokens stop working)."""

    @abc.abstractmethod
    def issue_token(
        self, principal: str, *, expires_at: datetime | None = None, reason: str | None = None
    ) -> tuple[str, str]:
        """A new API token for ``principal``: ``(token id, token)``. The token is shown this
        once; the store keeps only a salted hash."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, *, reason: str | None = None) -> Outcome:
        """Revoke a token by its id."""

    @abc.abstractmethod
    def grant(
        self,
        to: str,
        modes: str | Sequence[str],
        object: str,
        *,
        app: str | None = None,
        purpose: str | None = None,
        session: str | None = None,
        expires_at: datetime | None = None,
        reason: str | None = None,
        grant_id: str | None = None,
    ) -> str:
        """Allow ``to`` (a principal, ``group:<name>``, or ``*``) ``modes`` (read, write,
        audit, reveal, admin, or a preset: read-only, shared, private) on ``object``
        (``user/alice``, ``team/*``, ``*`` or ``memory:<id>``), in calls whose context
        has the given app / purpose / session, until ``expires_at``. The grant's id."""

    @abc.abstractmethod
    def revoke(self, grant_id: str, *, reason: str | None = None) -> Outcome:
        """Withdraw a grant."""

    @abc.abstractmethod
    def set_policy(
        self,
        object: str,
        *,
        sensitive: str = "allow",
        expire_after_idle_days: int | None = None,
        erase_after_expired_days: int | None = None,
        reason: str | None = None,
    ) -> Outcome:
        """The policy of the namespaces ``object`` selects: what to do with sensitive content
        (allow, tag, redact, reject) and retention."""

    @abc.abstractmethod
    def rules(self, *, as_of: Point | None = None) -> Rules:
        """Principals, grants, tokens (never their secrets or hashes) and policies, now or
        as they stood at ``as_of`` (a time or an offset)."""

    @abc.abstractmethod
    def who_can(
        self,
        mode: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
        as_of: Point | None = None,
    ) -> list[str]:
        """The principals that may ``mode`` on a namespace or a memory, now or ``as_of``."""

    @abc.abstractmethod
    def reveal(self, memory_id: str, *, version: int | None = None) -> Memory | None:
        """A memory (now, or at ``version``) as it was written, before its namespace's
        sensitive-content policy redacted it (a ``reveal`` grant on it); None if unknown."""

    @abc.abstractmethod
    def permission_changes(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        principal: str | None = None,
        namespace: str | None = None,
    ) -> list[PermissionChange]:
        """The permission report: every change of the rules (who granted what to whom,
        when and why), filtered by time, principal (for or by it) and namespace."""

    @abc.abstractmethod
    def export_audit(
        self,
        out: str | Path | TextIO,
        *,
        format: str = "jsonl",
        permissions: bool = False,
        namespace: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Write the audit trail (``permissions``: the permission report) for a namespace,
        an actor and a time range to ``out`` (a path, written whole or not at all, or an open
        text file) as JSON Lines or CSV; the number of records."""


def _modes(modes: str | Sequence[str]) -> Any:
    """One mode as a list of one; anything else as given (the service checks it)."""
    return [modes] if isinstance(modes, str) else modes


class EmbeddedGovernance(Governance):
    """:class:`Governance` on the store's own service, as its caller."""

    service: Any
    caller: Any

    def add_principal(self, name, *, kind="user", groups=(), disabled=False, reason=None):
        return self.service.set_principal(
            self.caller, name, kind=kind, groups=groups, disabled=disabled, reason=reason
        )

    def issue_token(self, principal, *, expires_at=None, reason=None):
        return self.service.issue_token(
            self.caller, principal, expires_at=expires_at, reason=reason
        )

    def revoke_token(self, token_id, *, reason=None):
        return self.service.revoke_token(self.caller, token_id, reason=reason)

    def grant(
        self, to, modes, object, *, app=None, purpose=None, session=None, expires_at=None,
        reason=None, grant_id=None,
    ):  # fmt: skip
        return self.service.grant(
            self.caller, to, _modes(modes), object, app=app, purpose=purpose, session=session,
            expires_at=expires_at, reason=reason, grant_id=grant_id,
        )[0]  # fmt: skip

    def revoke(self, grant_id, *, reason=None):
        return self.service.revoke(self.caller, grant_id, reason=reason)

    def set_policy(
        self, object, *, sensitive="allow", expire_after_idle_days=None,
        erase_after_expired_days=None, reason=None,
    ):  # fmt: skip
        return self.service.set_policy(
            self.caller, object, sensitive=sensitive,
            expire_after_idle_days=expire_after_idle_days,
            erase_after_expired_days=erase_after_expired_days, reason=reason,
        )  # fmt: skip

    def rules(self, *, as_of=None):
        return self.service.rules(self.caller, as_of)

    def who_can(self, mode, *, namespace=None, memory_id=None, as_of=None):
        return self.service.who_can(
            self.caller, mode, namespace=namespace, memory_id=memory_id, as_of=as_of
        )

    def reveal(self, memory_id, *, version=None):
        return self.service.reveal(self.caller, memory_id, version=version)

    def permission_changes(self, *, since=None, until=None, principal=None, namespace=None):
        return self.service.permission_changes(
            self.caller, since=since, until=until, principal=principal, namespace=namespace
        )

    def export_audit(
        self, out, *, format="jsonl", permissions=False, namespace=None, actor=None,
        since=None, until=None,
    ):  # fmt: skip
        check_format(format)
        if permissions:
            records: Iterable[Any] = self.permission_changes(
                since=since, until=until, principal=actor, namespace=namespace
            )
            columns = PermissionChange.__struct_fields__
        else:
            q = AuditQuery(namespace=namespace, actor=actor, since=since, until=until,
                           limit=10_000)  # fmt: skip
            records = self.service.audit_records(self.caller, q)
            columns = AuditEntry.__struct_fields__
        return write_export(lines(records, format, columns), out, format)
