"""What every route depends on: the service, the caller, and the request body."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import Depends, Request

from memstream.errors import BadRequest
from memstream.governance.tokens import Authenticator
from memstream.schemas.events import Context
from memstream.service import ANONYMOUS, Caller, MemoryService
from memstream.wire import CHECKED_HEADER, CONTEXT_HEADERS, FORWARDED_HEADER, PRINCIPAL_HEADER

__all__ = [
    "BodyDep", "BodyTooLarge", "CallerDep", "OpenCallerDep", "ServiceDep", "caller_of",
    "read_body",
]  # fmt: skip


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int, exact: bool):
        self.size, self.limit = size, limit
        amount = f"{size} bytes" if exact else f"more than {limit} bytes"
        super().__init__(
            f"request body is {amount}, over this server's limit of {limit} bytes; send "
            "smaller batches, or start the server with a larger --max-body-bytes"
        )


async def service_of(request: Request) -> MemoryService:
    return request.app.state.service


def _context(request: Request) -> Context:
    """The call context a request names (``X-Memstream-App``, ``-Session``, ``-Purpose``)."""
    headers = request.headers
    given = {k: v for k, h in CONTEXT_HEADERS.items() if (v := headers.get(h)) is not None}
    if not given:
        return Context()
    try:
        return msgspec.convert(given, Context)
    except msgspec.ValidationError as e:
        raise BadRequest(f"call context headers: {e}", field="header") from None


async def caller_of(request: Request) -> Caller:
    """The caller a request authenticates as, with its call context.

    With authentication on (the default of ``memstream serve``), the bearer token names the
    principal, checked on every call (the owner token of the server run: the store's owner,
    acting as ``X-Memstream-Principal``). With authentication explicitly off, the caller is
    whoever ``X-Memstream-Principal`` names (anonymous without one), unchecked. A trusted
    caller (the owner token, a Kafka worker's cluster token, or anyone with authentication
    off) that sends ``X-Memstream-Checked: 1`` is checked as the principal it names: a
    worker forwarding a read passes its caller on that way.
    """
    headers = request.headers
    auth: Authenticator | None = request.app.state.auth
    forwarded = headers.get(FORWARDED_HEADER) is not None
    if auth is None:
        principal, enforced = None, False
    else:
        principal, enforced = auth.caller(headers.get("authorization"))
    if not enforced and principal is None and headers.get(CHECKED_HEADER) == "1":
        # a trusted caller (another worker, by the cluster token) passing on a checked
        # caller: the principal it names is checked here as it was there
        enforced = True
    return Caller(
        principal=principal or headers.get(PRINCIPAL_HEADER) or ANONYMOUS,
        context=_context(request),
        remote=True,
        forwarded=forwarded,
        enforced=enforced,
    )


async def open_caller_of(request: Request) -> Caller:
    """The caller of a route that needs no token (``/health``): anonymous, unchecked."""
    return Caller(principal=ANONYMOUS, remote=True)


ServiceDep = Annotated[MemoryService, Depends(service_of)]
CallerDep = Annotated[Caller, Depends(caller_of)]
OpenCallerDep = Annotated[Caller, Depends(open_caller_of)]


async def read_body(request: Request) -> bytes:
    """The request body, refused past the app's ``max_body_bytes``.

    A declared Content-Length over the limit is refused without reading. A body that grows
    past the limit while streaming is read to its end (up to a bound) and discarded, so a
    client that sends everything before reading the answer still gets the 413, not a reset.
    """
    limit: int = request.app.state.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit, exact=True)
    chunks: list[bytes] = []
    size = 0
    drain_bound = limit * 4
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            if size > drain_bound:
                break
            continue
        chunks.append(chunk)
    if size > limit:
        raise BodyTooLarge(size, limit, exact=size <= drain_bound)
    return b"".join(chunks)


BodyDep = Annotated[bytes, Depends(read_body)]
