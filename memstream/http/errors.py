"""Exceptions mapped onto responses: one table for every route, on every server.

Every error body has ``error`` (a stable code) and ``message`` (what is wrong and how to
fix it); the Python client (:mod:`memstream.client.transport`) maps them back onto the
SDK's exceptions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memstream.errors import (
    BadRequest,
    EventTooLarge,
    Forbidden,
    MalformedEvent,
    NotCaughtUp,
    PartitionUnavailable,
    ProjectorFailed,
    Rejected,
    SearchDisabled,
    SensitiveContent,
    StoreReadOnly,
    SubscriptionClosed,
    TermsViolated,
    Unauthenticated,
    UnknownSubscription,
    Unsupported,
)
from memstream.wire import rejected_body

from .deps import BodyTooLarge
from .responses import MsgspecResponse, error

__all__ = ["ContainErrors", "install_error_handlers"]

log = logging.getLogger("memstream.http")


def _not_caught_up(request: Request, e: NotCaughtUp) -> Response:
    return error(
        503, "not_caught_up", str(e), wanted=e.wanted, reached=e.reached,
        lag=e.wanted - e.reached, wait=request.app.state.read_wait, lagging=e.lagging,
        started=e.started, headers={"retry-after": "1"},
    )  # fmt: skip


def _invalid_params(_: Request, e: RequestValidationError) -> Response:
    errors = e.errors()
    first = errors[0] if errors else {}
    field = ".".join(str(p) for p in first.get("loc", ()))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if "input" in first and first["input"] is not None:
        message += f" (got {first['input']!r})"
    return error(400, "bad_request", message, field=field or None)


def _http_error(request: Request, e: StarletteHTTPException) -> Response:
    if e.status_code == 404:
        message = f"no endpoint {request.method} {request.url.path}; see /docs for the API"
        return error(404, "no_route", message)
    if e.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return error(405, "method_not_allowed", message)
    return error(e.status_code, "http", str(e.detail))


_SEARCH_OFF = (
    "this server keeps no search indexes ($MEMSTREAM_SEMANTIC=0); restart it with search enabled"
)


def _terms_violated(_: Request, e: TermsViolated) -> Response:
    extra: dict[str, Any] = {"publication": e.publication, "term": e.term}
    if e.retry_after is not None:
        return error(
            429, "terms", str(e), retry_after=e.retry_after,
            headers={"Retry-After": str(max(1, math.ceil(e.retry_after)))}, **extra,
        )  # fmt: skip
    return error(403, "terms", str(e), **extra)


#: exception type → response; the most specific type wins (Starlette looks up the MRO).
HANDLERS: dict[type[Exception], Callable[[Request, Any], Response]] = {
    MalformedEvent: lambda _, e: MsgspecResponse(e.to_dict(), 422),
    EventTooLarge: lambda _, e: MsgspecResponse(e.to_dict(), 413),
    BodyTooLarge: lambda _, e: error(413, "too_large", str(e), field=None, index=None,
                                     limit=e.limit),
    NotCaughtUp: _not_caught_up,
    PartitionUnavailable: lambda _, e: MsgspecResponse(e.to_dict(), 503),
    SearchDisabled: lambda _, e: error(503, "search_disabled", _SEARCH_OFF),
    ProjectorFailed: lambda _, e: error(503, "projector_failed", str(e)),
    # a refused governance change (the routes of memory operations answer their own 409)
    Rejected: lambda _, e: MsgspecResponse(rejected_body(e), 409),
    SensitiveContent: lambda _, e: error(
        422, "sensitive", str(e), findings=e.findings, index=e.index
    ),
    Forbidden: lambda _, e: error(403, "forbidden", str(e), missing=e.missing),
    Unauthenticated: lambda _, e: error(
        401, "unauthenticated", str(e), headers={"WWW-Authenticate": 'Bearer realm="memstream"'}
    ),
    Unsupported: lambda _, e: error(501, "unsupported", str(e)),
    UnknownSubscription: lambda _, e: error(404, "not_found", str(e), name=e.name),
    SubscriptionClosed: lambda _, e: error(410, "closed", str(e)),
    TermsViolated: _terms_violated,
    StoreReadOnly: lambda _, e: error(409, "read_only", str(e)),
    FileExistsError: lambda _, e: error(409, "exists", str(e)),
    BadRequest: lambda _, e: error(400, "bad_request", str(e), field=e.field),
    # The service raises ValueError only for caller mistakes (a limit out of range, a naive
    # time, a min_offset beyond the log's end); its message names the parameter.
    ValueError: lambda _, e: error(400, "bad_request", str(e), field=None),
    RequestValidationError: _invalid_params,
    StarletteHTTPException: _http_error,
    # Anything else is a bug: ContainErrors answers 500 (and logs the traceback).
}  # fmt: skip


class ContainErrors:
    """ASGI middleware: an exception no handler maps (a bug) is logged with its traceback
    and answered with a 500 in the API's error shape, and goes no further.

    Starlette's own last-resort handler answers too, but then re-raises the exception to
    the server, and uvicorn closes the connection: a client's keep-alive connection would
    be dropped along with its next request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as e:
            log.exception("error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # the answer is on its way: it cannot become an error any more
                return
            message = f"internal error ({e.__class__.__name__}); see the server log"
            await error(500, "internal", message)(scope, receive, send)


def install_error_handlers(
    app: FastAPI, more: dict[type[Exception], Callable[[Request, Any], Response]] | None = None
) -> None:
    """Map every exception of :data:`HANDLERS` (and ``more``: a backend's own) onto its
    response."""
    for exc, handler in {**HANDLERS, **(more or {})}.items():
        app.add_exception_handler(exc, handler)
    app.add_middleware(ContainErrors)
