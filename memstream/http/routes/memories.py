"""``GET /v1/memories/{memory_id}`` and ``.../history``: a memory and its versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from memstream.validation import INT64_MAX
from memstream.wire import point

from ..deps import CallerDep, ServiceDep
from ..openapi import ERRORS, error_content, json_content, ref
from ..responses import MsgspecResponse, error

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


@router.get(
    "/v1/memories/{memory_id:path}/history",
    summary="A memory's version chain",
    description="Every version, oldest first; with include_parents the chains of the "
    "memories it was merged from, up to the merged version.",
    responses={
        200: json_content({"type": "array", "items": ref("Version")}, "the versions"),
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
        detail = f" at version {version}" if version is not None else ""
        detail += f" as of {as_of}" if as_of is not None else ""
        return error(
            404, "not_found",
            f"memory {memory_id} does not exist{detail}; check the id, or list the audit "
            "(GET /v1/audit) to see what happened to it",
            memory_id=memory_id,
        )  # fmt: skip
    return MsgspecResponse(m)
