"""The HTTP API as a FastAPI app over one :class:`~memstream.service.MemoryService`.

``memstream serve`` builds it over an embedded store, ``memstream worker`` over a worker's
shards (:mod:`memstream.http.worker`): the same routes, errors and OpenAPI document.

- **Responses are encoded by msgspec** (:class:`MsgspecResponse`): the read types are
  msgspec Structs, encoding them directly is fast and writes datetimes as RFC 3339.
- **Service calls block** (SQLite, DuckDB, the projector's condition variable, a
  worker's wait for its partition), so every one runs in the threadpool: plain ``def``
  endpoints, or ``run_in_threadpool``; the event loop stays free to accept requests and
  to shut down gracefully.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from memstream import __version__
from memstream.governance.tokens import Authenticator
from memstream.service import MemoryService

from .errors import install_error_handlers
from .openapi import DESCRIPTION, install_openapi
from .responses import MsgspecResponse
from .routes import ROUTERS

__all__ = ["create_app", "default_max_body_bytes"]


def default_max_body_bytes(max_event_bytes: int) -> int:
    """The request-body limit when none is configured: room for a large batch of events
    at the event limit, but bounded, so one request cannot exhaust the server's memory."""
    return max(32 * 1024 * 1024, 8 * max_event_bytes)


def create_app(
    target: MemoryService | Any,
    *,
    max_body_bytes: int | None = None,
    handlers: dict[type[Exception], Callable[[Request, Any], Response]] | None = None,
    auth: Authenticator | None = None,
) -> FastAPI:
    """The HTTP API over ``target``: a :class:`MemoryService`, or an open
    :class:`~memstream.MemoryStore` (its service; the caller closes it after serving).

    ``max_body_bytes`` bounds a request body (413 beyond it); the default leaves room for
    large batches (:func:`default_max_body_bytes`). Single events are also bounded by the
    codec's ``max_event_bytes`` (a 422 naming ``$.payload``). ``handlers`` map a backend's
    own exceptions onto responses. ``auth`` authenticates callers by bearer token
    (:class:`~memstream.governance.tokens.Authenticator`); None serves every caller
    unchecked, as the principal its ``X-Memstream-Principal`` header names.
    """
    service: MemoryService = target if isinstance(target, MemoryService) else target.service
    codec = service.codec
    app = FastAPI(
        title="memstream",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=MsgspecResponse,
    )
    app.state.service = service
    #: None: authentication off (every caller unchecked: an explicit, logged choice)
    app.state.auth = auth
    app.state.max_body_bytes = max_body_bytes or default_max_body_bytes(codec.max_event_bytes)
    app.state.read_wait = getattr(service.backend, "read_wait", 10.0)
    install_error_handlers(app, handlers)
    install_openapi(app, codec.registry)
    for router in ROUTERS:
        app.include_router(router)
    return app
