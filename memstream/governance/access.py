"""The access check: what each service action needs, and whether a caller holds it.

Every entry point of :class:`memstream.service.MemoryService` names an action; this module
maps it onto a grant mode and asks the rules in force (:class:`PolicyState`). A caller whose
checks are not enforced (the embedded SDK of the store's owner, the owner's local token, a
server run with authentication explicitly off) passes; every other caller needs a grant,
and a refusal names the grant it lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from memstream.errors import Forbidden
from memstream.projections.policy import PolicyState, matches

__all__ = ["ACTION_MODES", "AccessControl", "covers"]

#: The grant mode each service action needs (None: any authenticated caller).
ACTION_MODES: dict[str, str | None] = {
    "write": "write", "read": "read", "search": "read", "audit": "audit", "reveal": "reveal",
    "verify": "admin", "checkpoint": "admin", "backup": "admin", "replay": "admin",
    "govern": "admin", "retention": "admin", "status": None,
}  # fmt: skip


def covers(admin_object: str, obj: str) -> bool:
    """Whether an admin grant on ``admin_object`` lets its holder grant on ``obj``."""
    if admin_object == "*":
        return True
    if obj == "*":
        return False
    if admin_object.endswith("/*"):
        base = admin_object[:-2]
        target = obj[:-2] if obj.endswith("/*") else obj
        return target == base or target.startswith(base + "/")
    return obj == admin_object


class AccessControl:
    """Checks callers against ``policy()`` (the rules in force) at ``clock()``."""

    def __init__(
        self,
        policy: Callable[[], PolicyState],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.policy = policy
        self.clock = clock

    def allowed(
        self,
        caller,
        action: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
    ) -> bool:
        if not caller.enforced:
            return True
        mode = ACTION_MODES[action]
        policy = self.policy()
        if mode is None:
            return policy.active(caller.principal)
        return policy.allows(
            caller.principal, mode, namespace=namespace, memory_id=memory_id,
            context=caller.context, now=self.clock(),
        )  # fmt: skip

    def check(
        self,
        caller,
        action: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
    ) -> None:
        """Pass, or raise :class:`Forbidden` naming the grant ``caller`` lacks."""
        if self.allowed(caller, action, namespace=namespace, memory_id=memory_id):
            return
        mode = ACTION_MODES[action] or "read"
        obj = namespace or (f"memory:{memory_id}" if memory_id else "*")
        raise Forbidden(
            f"principal {caller.principal} may not {action} on {obj}: it needs a grant of "
            f"{mode} on {obj} (or on a pattern covering it); an admin grants it with "
            f"`memstream grant {caller.principal} {mode} {obj}`",
            missing=f"{mode} on {obj}",
        )

    def check_admin_over(self, caller, obj: str, *, namespace: str | None = None) -> None:
        """Pass if ``caller`` holds admin on a pattern covering grant object ``obj`` (a
        memory's: on its ``namespace``), else :class:`Forbidden`."""
        if not caller.enforced:
            return
        policy, now = self.policy(), self.clock()
        for g in policy.grants_of(caller.principal):
            if not g.covers("admin") or not g.fits(caller.context, now):
                continue
            if covers(g.object, obj) or (
                namespace is not None
                and obj.startswith("memory:")
                and matches(g.object, namespace, obj[7:])
            ):
                return
        raise Forbidden(
            f"principal {caller.principal} may not change the rules of {obj}: it needs admin "
            f"on {obj} (or on a pattern covering it)",
            missing=f"admin on {obj}",
        )

    def scope(
        self, caller, namespaces: set[str] | list[str]
    ) -> tuple[frozenset[str], frozenset[str]] | None:
        """What ``caller`` may read among ``namespaces``: None when everything, else (the
        namespaces it reads whole, the memories it reads one by one)."""
        if not caller.enforced:
            return None
        policy, now = self.policy(), self.clock()
        if policy.allows(caller.principal, "read", context=caller.context, now=now):
            return None
        whole, ones = policy.readable(caller.principal, namespaces, context=caller.context, now=now)
        return frozenset(whole), frozenset(ones)
