"""``GET /v1/access-log`` (who read what, filtered and paginated) and
``GET /v1/access-log/export`` (all of it, or a filtered part, as JSON Lines or CSV)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from memstream.governance.access_log import MEDIA_TYPES, AccessQuery
from memstream.validation import INT64_MAX
from memstream.wire import time_point

from ..deps import CallerDep, ServiceDep
from ..openapi import ERRORS, error_content, json_content, ref
from ..responses import MsgspecResponse

router = APIRouter(tags=["governance"])

PrincipalQuery = Annotated[str | None, Query(description="Only reads by this principal.")]
NamespaceQuery = Annotated[
    str | None, Query(description="Only reads that asked for, or returned, this namespace.")
]
MemoryQuery = Annotated[str | None, Query(description="Only reads of this memory.")]
ActionQuery = Annotated[
    str | None,
    Query(description="Only this action: get, history, list, search, audit, follow, "
          "access_log, access_log_export."),
]  # fmt: skip
TimeQuery = Annotated[str | None, Query(description="RFC 3339 time with timezone (inclusive).")]
AfterQuery = Annotated[
    int | None, Query(ge=0, le=INT64_MAX, description="Cursor: a page's `next_after`.")
]
LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="Records per page.")]
FormatQuery = Annotated[
    str, Query(pattern="^(jsonl|csv)$", description="`jsonl` (JSON Lines) or `csv`.")
]
_AUDITOR = "Needs auditor access (the `audit` action)."
_OFF = error_content("no access log is kept here (turned off, or a Kafka worker)")


def _query(
    principal: str | None,
    namespace: str | None,
    memory_id: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    after: int | None,
    limit: int = 100,
) -> AccessQuery:
    return AccessQuery(
        principal=principal, namespace=namespace, memory_id=memory_id, action=action,
        since=time_point(since, "since"), until=time_point(until, "until"), after=after,
        limit=limit,
    )  # fmt: skip


@router.get(
    "/v1/access-log",
    summary="The access log: who read what, filtered and paginated",
    description="Every read the store answered (get, history, list, search with the ids it "
    "returned, audit, follow, and reads of this log), oldest first: when, the principal and "
    "its call context, the action, the namespaces and memory ids read, and how it was "
    "asked (a search's query text only as a keyed hash). Pass `next_after` as `after` for "
    f"the next page. {_AUDITOR}",
    responses={200: json_content(ref("AccessPage"), "a page of records"), 501: _OFF, **ERRORS},
)
def access_log(
    caller: CallerDep,
    service: ServiceDep,
    principal: PrincipalQuery = None,
    namespace: NamespaceQuery = None,
    memory_id: MemoryQuery = None,
    action: ActionQuery = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    after: AfterQuery = None,
    limit: LimitQuery = 100,
) -> Response:
    q = _query(principal, namespace, memory_id, action, since, until, after, limit)
    return MsgspecResponse(service.access_log(caller, q))


@router.get(
    "/v1/access-log/export",
    summary="The access log as JSON Lines or CSV, streamed",
    description="Every record matching the filters (those of `GET /v1/access-log`), oldest "
    "first, as there were when the export began: JSON Lines (one record per line) or CSV "
    f"(a header row; lists and objects as JSON text). {_AUDITOR}",
    responses={
        200: {
            "description": "the records",
            "content": {
                MEDIA_TYPES["jsonl"]: {"schema": {"type": "string"}},
                MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
            },
        },
        400: ERRORS[400],
        501: _OFF,
    },
    response_class=StreamingResponse,
)
def export_access_log(
    caller: CallerDep,
    service: ServiceDep,
    format: FormatQuery = "jsonl",
    principal: PrincipalQuery = None,
    namespace: NamespaceQuery = None,
    memory_id: MemoryQuery = None,
    action: ActionQuery = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    after: AfterQuery = None,
) -> Response:
    q = _query(principal, namespace, memory_id, action, since, until, after)
    chunks = service.export_access_log(caller, q, format)
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[format],
        headers={"content-disposition": f'attachment; filename="access-log.{format}"'},
    )
