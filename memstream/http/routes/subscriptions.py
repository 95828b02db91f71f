"""Pub/sub: subscriptions (``/v1/subscriptions``), their deliveries as Server-Sent Events,
acknowledgements and the parked list, and publications (``/v1/publications``).

Every route calls the service's pub/sub methods with the request's caller; the service
checks who may do what. The event stream (``GET /v1/subscriptions/{name}/events``) is one
coroutine per connection, fed by :meth:`Subscriber.next_async` (it waits on the consumer
without holding a thread), and written by sse-starlette:

- a delivery is ``event: delivery`` with ``id: <position>`` and the Delivery as JSON;
- a heartbeat (nothing to deliver for ``heartbeat`` seconds) is ``event: heartbeat``;
- the subscription deleted (or the store closing): ``event: closed``, then the end;
- a publication's terms refusing more: ``event: error`` with the error body, then the end.

A client that reconnects sends ``Last-Event-ID`` (or ``?last_event_id=``): deliveries in
flight beyond it go out again at once. A stream that ends without ``closed`` (the server
stopping) is resumed by reconnecting.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Header, Path, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.errors import PartitionUnavailable, SubscriptionClosed
from memstream.schemas.views import Delivery
from memstream.service.pubsub import Subscriber
from memstream.validation import INT64_MAX
from memstream.wire import (
    AckRequest,
    NackRequest,
    PublicationRequest,
    ReasonRequest,
    SeekRequest,
    SubscriptionRequest,
    UnparkRequest,
    decode_request,
)

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import ERRORS, error_content, json_content, ref, request_body
from ..responses import MsgspecResponse

__all__ = ["router"]

router = APIRouter(tags=["pubsub"])

_encode = msgspec.json.Encoder().encode

NamePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
        description="The subscription's (or publication's) name.",
    ),
]
HeartbeatQuery = Annotated[
    float,
    Query(
        ge=0.01,
        le=3600.0,
        description="Seconds with nothing to deliver before a heartbeat is sent.",
    ),
]
PartitionsQuery = Annotated[
    str | None,
    Query(
        max_length=10_000,
        pattern=r"^[0-9]{1,4}(,[0-9]{1,4})*$",
        description="The Kafka runtime: only these partitions, comma-separated (what a worker "
        "asks of the owner of some); default: every partition, merged.",
    ),
]
LastEventQuery = Annotated[
    int | None,
    Query(
        ge=-1,
        le=INT64_MAX,
        description="The last position the client saw (for clients that cannot set the "
        "Last-Event-ID header): deliveries in flight beyond it are sent again at once.",
    ),
]
LastEventHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=-1,
        le=INT64_MAX,
        description="The id (position) of the last event the client received; an "
        "EventSource sends it when it reconnects.",
    ),
]
ReasonQuery = Annotated[
    str | None, Query(max_length=2000, description="Why (kept in the audit trail).")
]
LimitQuery = Annotated[int, Query(ge=1, le=100_000, description="At most this many.")]

_ANSWERS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: error_content("no token, or a token that does not authenticate"),
    403: error_content("not the subscription's owner (or an admin), or a publication's term "
                       "refuses it (`terms`, naming the `term`)"),
    404: error_content("no subscription (or publication) of that name (`name`)"),
    429: error_content("a publication's deliveries per period are used up (`retry_after`)"),
    501: error_content("this process serves no subscriptions (a read-only store)"),
}  # fmt: skip


def _list(key: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": ref(item)}},
    }


def _count(key: str, kind: str = "integer") -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: {"type": kind}}}


def _optional(body: bytes) -> bytes:
    return body if body.strip() else b"{}"


# -- subscriptions -------------------------------------------------------------------------


@router.put(
    "/v1/subscriptions/{name}",
    summary="Create a subscription, or change it (its cursor stays)",
    description="A subscription delivers, as its owner, every event its filter matches, "
    "from `start` on. Changing one (the same name again) replaces its filter, limits and "
    "description; `start` applies to a new one only.",
    openapi_extra=request_body(ref("SubscriptionRequest")),
    responses={200: json_content(ref("SubscriptionView"), "the subscription"), **_ANSWERS},
)
async def set_subscription(
    name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep
) -> Response:
    req: SubscriptionRequest = decode_request(body, SubscriptionRequest)
    got = await run_in_threadpool(
        service.set_subscription, caller, name, filter=req.filter,
        start="now" if req.start is None else req.start, view=req.view,
        max_in_flight=req.max_in_flight, ack_timeout=req.ack_timeout,
        publication=req.publication, description=req.description, owner=req.owner,
    )  # fmt: skip
    return MsgspecResponse(got)


@router.get(
    "/v1/subscriptions",
    summary="The caller's subscriptions (every one, for an admin)",
    responses={200: json_content(_list("subscriptions", "SubscriptionView"), "by name"),
               **_ANSWERS},
)  # fmt: skip
async def subscriptions(caller: CallerDep, service: ServiceDep) -> Response:
    got = await run_in_threadpool(service.subscriptions, caller)
    return MsgspecResponse({"subscriptions": got})


@router.get(
    "/v1/subscriptions/{name}",
    summary="A subscription, with its cursor and what is in flight",
    responses={200: json_content(ref("SubscriptionView"), "the subscription"), **_ANSWERS},
)
async def subscription(name: NamePath, caller: CallerDep, service: ServiceDep) -> Response:
    return MsgspecResponse(await run_in_threadpool(service.subscription, caller, name))


@router.delete(
    "/v1/subscriptions/{name}",
    status_code=204,
    summary="Delete a subscription: its streams end (`closed`), its cursor goes",
    responses={204: {"description": "deleted"}, **_ANSWERS},
)
async def delete_subscription(
    name: NamePath, caller: CallerDep, service: ServiceDep, reason: ReasonQuery = None
) -> Response:
    await run_in_threadpool(service.delete_subscription, caller, name, reason=reason)
    return Response(status_code=204)


@router.post(
    "/v1/subscriptions/{name}/seek",
    summary="Move a subscription's cursor (what was in flight is dropped)",
    description="`now`: the head; `beginning`; an offset: delivered next; an RFC 3339 time: "
    "the first event recorded at or after it is delivered next.",
    openapi_extra=request_body(ref("SeekRequest")),
    responses={200: json_content(ref("SubscriptionView"), "the subscription"), **_ANSWERS},
)
async def seek(name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: SeekRequest = decode_request(body, SeekRequest)
    return MsgspecResponse(await run_in_threadpool(service.seek, caller, name, req.start))


_STREAM_DESCRIPTION = """\
Server-Sent Events (`text/event-stream`), one connection per consumer; every consumer of a
subscription shares its cursor and its deliveries in flight.

* `event: delivery`, `id: <position>`, `data:` a Delivery (JSON). Acknowledge it with
  `POST .../ack`; one not acknowledged within the subscription's `ack_timeout` is delivered
  again (`attempt` 2, 3, ...).
* `event: heartbeat`, `data:` a Heartbeat: nothing to deliver for `heartbeat` seconds
  (`position`: every event up to it has been looked at; `head`: the log's end).
* `event: closed`: the subscription was deleted (or the store is closing); the stream ends.
* `event: error`, `data:` an error body (`error`, `message`, `status`): a publication's
  terms refuse more (`terms`); the stream ends.

Reconnect with `Last-Event-ID` (or `last_event_id`): deliveries in flight beyond it are
sent again at once. A stream that ends without `closed` (the server stopping): reconnect.
"""


@router.get(
    "/v1/subscriptions/{name}/events",
    summary="Receive a subscription's deliveries (Server-Sent Events)",
    description=_STREAM_DESCRIPTION,
    responses={
        200: {
            "description": "the stream of deliveries and heartbeats",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        410: error_content("the subscription is being deleted"),
        **_ANSWERS,
    },
)
async def events(
    name: NamePath,
    request: Request,
    caller: CallerDep,
    service: ServiceDep,
    heartbeat: HeartbeatQuery = 15.0,
    last_event_id: LastEventQuery = None,
    last_event_header: LastEventHeader = None,
    partitions: PartitionsQuery = None,
) -> Response:
    last_seen = last_event_header if last_event_header is not None else last_event_id
    parts = [int(p) for p in partitions.split(",")] if partitions else None
    # checked before the first byte: an unknown subscription, another's, or a publication
    # whose terms refuse it is an ordinary error answer
    sub = await run_in_threadpool(
        service.consume, caller, name, heartbeat=heartbeat, last_seen=last_seen,
        partitions=parts,
    )  # fmt: skip
    return EventSourceResponse(_stream(request, sub), ping=0, headers={"X-Accel-Buffering": "no"})


async def _stream(request: Request, sub: Subscriber) -> AsyncIterator[ServerSentEvent]:
    """The events of one connection; cancelled (at an ``await``) when the client goes."""
    try:
        while True:
            try:
                got = await sub.next_async()
            except SubscriptionClosed as e:
                body = {"error": "closed", "message": str(e), "status": 410}
                yield ServerSentEvent(data=json.dumps(body), event="closed")
                return
            except PartitionUnavailable:
                return  # a partition moved (the Kafka runtime): the client reconnects
            except Exception as e:
                answer = await _error_answer(request, e)
                if answer is None:
                    raise  # a bug: logged by the app (the stream breaks off)
                yield ServerSentEvent(data=answer, event="error")
                return
            data = _encode(got).decode()
            if isinstance(got, Delivery):
                yield ServerSentEvent(data=data, event="delivery", id=str(got.position))
            else:
                yield ServerSentEvent(data=data, event="heartbeat")
    finally:
        sub.close()


async def _error_answer(request: Request, e: Exception) -> str | None:
    """The body the app answers ``e`` with (as an error event: its ``status`` added), or
    None when no handler maps it."""
    handlers = request.app.exception_handlers
    handler = next((handlers[c] for c in type(e).__mro__ if c in handlers), None)
    if handler is None:
        return None
    response = handler(request, e)
    if inspect.isawaitable(response):
        response = await response
    body = msgspec.json.decode(response.body)
    return json.dumps({**body, "status": response.status_code})


@router.post(
    "/v1/subscriptions/{name}/ack",
    summary="Acknowledge deliveries: by position, or every one up to a position",
    openapi_extra=request_body(ref("AckRequest")),
    responses={200: json_content(_count("acked"), "how many were in flight"), **_ANSWERS},
)
async def ack(name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: AckRequest = decode_request(body, AckRequest)
    req.check()
    if req.upto is None:
        n = await run_in_threadpool(service.ack, caller, name, req.positions or [])
    else:
        n = await run_in_threadpool(service.ack_upto, caller, name, req.upto)
    return MsgspecResponse({"acked": n})


@router.post(
    "/v1/subscriptions/{name}/nack",
    summary="Reject a delivery: parked (default), or delivered again at once",
    openapi_extra=request_body(ref("NackRequest")),
    responses={200: json_content(_count("nacked", "boolean"), "false: it was not in flight"),
               **_ANSWERS},
)  # fmt: skip
async def nack(name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: NackRequest = decode_request(body, NackRequest)
    got = await run_in_threadpool(
        service.nack, caller, name, req.position, reason=req.reason, park=req.park
    )
    return MsgspecResponse({"nacked": got})


@router.get(
    "/v1/subscriptions/{name}/parked",
    summary="The deliveries its consumers parked, oldest first",
    responses={200: json_content(_list("parked", "ParkedDelivery"), "the parked deliveries"),
               **_ANSWERS},
)  # fmt: skip
async def parked(
    name: NamePath, caller: CallerDep, service: ServiceDep, limit: LimitQuery = 1_000
) -> Response:
    got = await run_in_threadpool(service.parked, caller, name, limit=limit)
    return MsgspecResponse({"parked": got})


@router.post(
    "/v1/subscriptions/{name}/unpark",
    summary="Remove parked deliveries (handled by hand)",
    openapi_extra=request_body(ref("UnparkRequest")),
    responses={200: json_content(_count("unparked"), "how many were removed"), **_ANSWERS},
)
async def unpark(name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: UnparkRequest = decode_request(body, UnparkRequest)
    n = await run_in_threadpool(service.unpark, caller, name, req.positions)
    return MsgspecResponse({"unparked": n})


# -- publications --------------------------------------------------------------------------


@router.put(
    "/v1/publications/{name}",
    summary="Publish a namespace's memories under terms (again: revise the terms)",
    description="Needs admin on the namespace. Those in `to` subscribe to it (`publication` "
    "on a subscription) without a read grant on the namespace.",
    openapi_extra=request_body(ref("PublicationRequest")),
    responses={200: json_content(ref("PublicationView"), "the publication"), **_ANSWERS},
)
async def publish(
    name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep
) -> Response:
    req: PublicationRequest = decode_request(body, PublicationRequest)
    got = await run_in_threadpool(
        service.publish, caller, name, req.namespace, req.to, tag=req.tag,
        memory_id=req.memory_id, expires_at=req.expires_at, max_deliveries=req.max_deliveries,
        period_seconds=req.period_seconds, redact=req.redact, description=req.description,
    )  # fmt: skip
    return MsgspecResponse(got)


@router.get(
    "/v1/publications",
    summary="The publications the caller may subscribe to, or administers",
    responses={200: json_content(_list("publications", "PublicationView"), "by name"),
               **_ANSWERS},
)  # fmt: skip
async def publications(caller: CallerDep, service: ServiceDep) -> Response:
    got = await run_in_threadpool(service.publications, caller)
    return MsgspecResponse({"publications": got})


@router.get(
    "/v1/publications/{name}",
    summary="A publication and its terms",
    responses={200: json_content(ref("PublicationView"), "the publication"), **_ANSWERS},
)
async def publication(name: NamePath, caller: CallerDep, service: ServiceDep) -> Response:
    return MsgspecResponse(await run_in_threadpool(service.publication, caller, name))


@router.post(
    "/v1/publications/{name}/withdraw",
    status_code=204,
    summary="Withdraw a publication: nothing more of it is delivered",
    openapi_extra={"requestBody": {"required": False, "content": {
        "application/json": {"schema": ref("ReasonRequest")}}}},
    responses={204: {"description": "withdrawn"}, **_ANSWERS},
)  # fmt: skip
async def withdraw(
    name: NamePath, body: BodyDep, caller: CallerDep, service: ServiceDep
) -> Response:
    req: ReasonRequest = decode_request(_optional(body), ReasonRequest)
    await run_in_threadpool(service.withdraw, caller, name, reason=req.reason)
    return Response(status_code=204)
