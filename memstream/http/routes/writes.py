"""The one-line operations: a memory's fields in, the event built by the server.

``POST /v1/memories`` creates a memory from a namespace and a text (tags, metadata,
subject, id and call context optional); ``POST /v1/memories/{memory_id}/revise``,
``archive``, ``restore`` and ``erase`` change one; ``POST /v1/subjects/{subject}/erase``
erases every memory of a subject. The event id, schema version and time are the server's,
the actor is the caller (``X-Memstream-Principal``). ``POST /v1/events`` stays for
producers that build events themselves.

Each answers the outcome (201 with a ``Location`` for a create); an operation the
lifecycle refuses answers 409 ``rejected`` with its outcome, one on a memory that does
not exist 404 ``not_found`` (nothing is appended).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.errors import Rejected, UnknownMemory
from memstream.service import Caller, MemoryService
from memstream.wire import (
    AddRequest,
    ChangeRequest,
    EraseSubjectRequest,
    ReviseRequest,
    decode_request,
    not_found_body,
    outcome_body,
    rejected_body,
)

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import error_content, json_content, ref, request_body
from ..responses import MsgspecResponse

router = APIRouter(tags=["memories"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: error_content("a parameter is invalid (the message names it)"),
    404: error_content("no such memory: nothing was appended"),
    409: error_content("the lifecycle refused the operation (`code`, with its `outcome`)"),
    413: error_content("the payload or the body is over the size limit (`limit`)"),
    422: error_content("malformed: nothing was appended"),
    503: error_content("a partition is unavailable or catching up"),
}


def _optional(body: bytes) -> bytes:
    return body if body.strip() else b"{}"


async def _run(service: MemoryService, caller: Caller, namespace: str | None, call: Any) -> Any:
    """``call(ops)`` on the service's operations as ``caller``, in the threadpool; a refusal
    becomes its answer."""

    def run() -> Any:
        try:
            return call(service.operations(caller, namespace))
        except UnknownMemory as e:
            if e.offset is None:  # refused before anything was appended
                return MsgspecResponse(not_found_body(str(e.memory_id)), 404)
            return MsgspecResponse(rejected_body(e), 409)
        except Rejected as e:
            return MsgspecResponse(rejected_body(e), 409)

    return await run_in_threadpool(run)


def _answer(got: Any, status: int = 200) -> Response:
    if isinstance(got, Response):
        return got
    headers = None
    if status == 201:
        headers = {"location": "/v1/memories/" + quote(got.memory_id, safe="/:@")}
    return MsgspecResponse(outcome_body(got), status, headers)


@router.post(
    "/v1/memories",
    status_code=201,
    summary="Create a memory from a namespace and a text",
    description="The server builds the `create` event (id, schema version, time) with the "
    "caller (X-Memstream-Principal) as actor. Answers the outcome, with the new memory's "
    "URL in `Location`.",
    openapi_extra=request_body(ref("AddRequest")),
    responses={201: json_content(ref("Outcome"), "the memory was created"), **_ANSWERS},
)
async def add(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: AddRequest = decode_request(body, AddRequest)
    return _answer(await _run(service, caller, req.namespace, req.apply), 201)


@router.post(
    "/v1/memories/{memory_id:path}/revise",
    summary="A new version of a memory's content",
    openapi_extra=request_body(ref("ReviseRequest")),
    responses={200: json_content(ref("Outcome"), "the new version"), **_ANSWERS},
)
async def revise(memory_id: str, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: ReviseRequest = decode_request(body, ReviseRequest)
    got = await _run(service, caller, req.namespace, lambda ops: req.apply(ops, memory_id))
    return _answer(got)


def _change(operation: str, summary: str) -> None:
    async def change(
        memory_id: str, body: BodyDep, caller: CallerDep, service: ServiceDep
    ) -> Response:
        req: ChangeRequest = decode_request(_optional(body), ChangeRequest)
        got = await _run(
            service, caller, req.namespace, lambda ops: req.apply(ops, operation, memory_id)
        )
        return _answer(got)

    change.__name__ = operation
    router.post(
        f"/v1/memories/{{memory_id:path}}/{operation}",
        summary=summary,
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": ref("ChangeRequest")}},
            }
        },
        responses={200: json_content(ref("Outcome"), "the outcome"), **_ANSWERS},
    )(change)


_change("archive", "Move a memory to cold storage (out of default search and lists)")
_change("restore", "Bring an archived memory back")
_change(
    "erase",
    "Crypto-shred this memory and no other (its content is unreadable in every copy of the log)",
)


@router.post(
    "/v1/subjects/{subject:path}/erase",
    summary="Crypto-shred every memory of a subject",
    description="Destroys the subject's keys, and with them every memory sealed for it; "
    "`erased` lists them. Refused (409) while one is frozen, or if the subject has none.",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": ref("EraseSubjectRequest")}},
        }
    },
    responses={200: json_content(ref("Outcome"), "the outcome"), **_ANSWERS},
)
async def erase_subject(
    subject: str, body: BodyDep, caller: CallerDep, service: ServiceDep
) -> Response:
    req: EraseSubjectRequest = decode_request(_optional(body), EraseSubjectRequest)
    got = await _run(service, caller, req.namespace, lambda ops: req.apply(ops, subject))
    return _answer(got)
