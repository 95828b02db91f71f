"""The routes of the HTTP API, one module per resource; each calls the service only."""

from . import (
    access,
    audit,
    events,
    governance,
    internal,
    memories,
    ops,
    retention,
    search,
    subscriptions,
    writes,
)  # fmt: skip

#: every router, in the order the app includes them (governance before memories: its
#: ``/v1/memories/{id}/original`` must match before the memory's own ``{id:path}``)
ROUTERS = [
    ops.router, events.router, governance.router, memories.router, writes.router,
    audit.router, search.router, retention.router, access.router, subscriptions.router,
    internal.router,
]  # fmt: skip

__all__ = ["ROUTERS"]
