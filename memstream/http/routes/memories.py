"""``GET /v1/memories`` (a list), ``GET /v1/memories/{memory_id}`` and ``.../history``: a
memory and its versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from memstream.queries import LIST_STATES, ListQuery
from memstream.validation import INT64_MAX
from memstream.wire import not_found_body, point

from ..deps import CallerDep, ServiceDep
from ..openapi import ERRORS, error_content, json_content, ref
from ..responses import MsgspecResponse

router = APIRouter(tags=["memories"])

# Module-level, so FastAPI can resolve them from the endpoints' annotations.
AsOfQuery = Annotated[
    str | None,
    Query(description="An offset (integer) or an RFC 3339 time with timezone (`recorded_at`)."),
]
MinOffsetQuery = Annotated[
    int | None,
    Query(ge=0, le=INT64_MAX, description="Wait (bounded) until the projection holds this offset."),
]
NamespaceQuery = Annotated[
    str | None,
    Query(description="The memory's namespace: required by the Kafka runtime (it names the "
          "partition that holds the memory); an embedded store does not need it."),
]  # fmt: skip
VersionQuery = Annotated[
    int | None, Query(ge=1, le=INT64_MAX, description="A version of the content.")
]


def not_found(memory_id: str, version: int | None = None, as_of: str | None = None) -> Response:
    return MsgspecResponse(not_found_body(memory_id, version, as_of), 404)


@router.get(
    "/v1/memories",
    summary="Memories, filtered and paginated, in creation order",
    description="The memories of a namespace (every namespace's without one; the Kafka "
    f"runtime needs it) at their current version, oldest first. `state` (repeat) defaults "
    f"to {', '.join(LIST_STATES)}; `tag` (repeat): memories with every one. Pass "
    "`next_after` as `after` for the next page.",
    responses={200: json_content(ref("MemoryPage"), "a page of memories"), **ERRORS},
)
def list_memories(
    caller: CallerDep,
    service: ServiceDep,
    namespace: str | None = None,
    state: Annotated[list[str] | None, Query(description="Only these states (repeat).")] = None,
    tag: Annotated[list[str] | None, Query(description="Has every one of these tags.")] = None,
    after: Annotated[
        int | None, Query(ge=-1, le=INT64_MAX, description="Cursor: a page's `next_after`.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Memories per page.")] = 100,
    min_offset: MinOffsetQuery = None,
) -> Response:
    q = ListQuery(namespace=namespace, states=state, tags=tag or (), after=after, limit=limit)
    return MsgspecResponse(service.list_memories(caller, q, min_offset=min_offset))


@router.get(
    "/v1/memories/{memory_id:path}/history",
    summary="A memory's version chain",
    description="Every version, oldest first; with include_parents the chains of the "
    "memories it was merged from, up to the merged version.",
    responses={
        200: json_content({"type": "array", "items": ref("Version")}, "the versions"),
        404: error_content("no such memory (or none yet as of that point)"),
        **ERRORS,
    },
)
def history(
    memory_id: str,
    caller: CallerDep,
    service: ServiceDep,
    namespace: NamespaceQuery = None,
    include_parents: bool = True,
    as_of: AsOfQuery = None,
    min_offset: MinOffsetQuery = None,
) -> Response:
    versions = service.history(
        caller, memory_id, namespace=namespace, include_parents=include_parents,
        as_of=point(as_of, "as_of"), min_offset=min_offset,
    )  # fmt: skip
    if not versions:
        return not_found(memory_id, as_of=as_of)
    return MsgspecResponse(versions)


@router.get(
    "/v1/memories/{memory_id:path}",
    summary="A memory now, at a version, or as of a point in the log",
    responses={
        200: json_content(ref("Memory"), "the memory"),
        404: error_content("no such memory (at that version or point)"),
        **ERRORS,
    },
)
def get_memory(
    memory_id: str,
    caller: CallerDep,
    service: ServiceDep,
    namespace: NamespaceQuery = None,
    version: VersionQuery = None,
    as_of: AsOfQuery = None,
    min_offset: MinOffsetQuery = None,
) -> Response:
    m = service.get(
        caller, memory_id, namespace=namespace, version=version, as_of=point(as_of, "as_of"),
        min_offset=min_offset,
    )  # fmt: skip
    if m is None:
        return not_found(memory_id, version, as_of)
    return MsgspecResponse(m)
