"""Who calls the service, and in which call context."""

from __future__ import annotations

import msgspec

from memstream.schemas.events import Context

__all__ = ["ANONYMOUS", "Caller"]

#: The principal of a remote caller that named none.
ANONYMOUS = "anonymous"


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """A principal and its call context, carried by every call into the service.

    ``remote`` callers come through a face (HTTP): the events they write are stamped with
    their principal as actor, and their call context where an event has none. A local
    caller (the embedded SDK in its own process, which owns the store's files) writes its
    events as it built them. ``forwarded`` marks a read one worker passed to another (it
    is never forwarded again).
    """

    principal: str
    context: Context = Context()
    remote: bool = False
    forwarded: bool = False
    #: whether the access check applies (memstream/governance/access.py): to an
    #: authenticated HTTP caller and to an embedded SDK opened as a principal, whose events
    #: are stamped with that principal as actor whatever they claim. A caller not enforced
    #: is the store's owner: the embedded SDK in its own process, the owner's local token of
    #: a server, or any caller of a server run with authentication explicitly off.
    enforced: bool = False

    @classmethod
    def local(cls, actor: str, context: Context | None = None) -> Caller:
        """The embedded SDK, acting as ``actor`` (the store's owner: not checked)."""
        return cls(principal=actor, context=context or Context())

    @classmethod
    def principal_of(cls, principal: str, context: Context | None = None) -> Caller:
        """The embedded SDK acting as ``principal``, checked like an HTTP caller."""
        return cls(principal=principal, context=context or Context(), enforced=True)

    @property
    def identified(self) -> bool:
        """Whether the caller named a principal (an anonymous remote caller did not)."""
        return self.principal != ANONYMOUS
