"""The HTTP API: FastAPI routers over the service, served by ``memstream serve`` and by
every ``memstream worker``.

- :mod:`.app`: :func:`create_app` (the routers, error handlers and OpenAPI, over a service).
- :mod:`.routes`: one module per resource (events, memories, audit, search, ops).
- :mod:`.deps`: the service, the caller (principal and call context) and the body.
- :mod:`.errors`: exceptions mapped onto responses; :mod:`.openapi`: the document.
- :mod:`.worker`: a Kafka worker with this API, in the worker's own event loop.
"""

from .app import create_app, default_max_body_bytes
from .responses import MsgspecResponse

__all__ = ["MsgspecResponse", "create_app", "default_max_body_bytes"]
