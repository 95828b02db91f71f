"""The routes of the HTTP API, one module per resource; each calls the service only."""

from . import audit, events, governance, memories, ops, retention, search, writes

#: every router, in the order the app includes them
ROUTERS = [
    ops.router, events.router, memories.router, writes.router, audit.router, search.router,
    governance.router,
    retention.router,
]  # fmt: skip

__all__ = ["ROUTERS"]
