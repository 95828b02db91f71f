"""``GET /v1/audit`` (the trail, filtered and paginated) and ``POST /v1/audit/verify``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from memstream.queries import AuditQuery
from memstream.validation import INT64_MAX
from memstream.wire import point, time_point

from ..deps import CallerDep, ServiceDep
from ..openapi import ERRORS, json_content, ref
from ..responses import MsgspecResponse
from .memories import AsOfQuery, MinOffsetQuery

router = APIRouter(tags=["audit"])

StatusQuery = Annotated[str | None, Query(pattern="^(accepted|rejected)$")]
TimeQuery = Annotated[str | None, Query(description="RFC 3339 time with timezone (recorded_at).")]
AfterQuery = Annotated[
    int | None, Query(ge=-1, le=INT64_MAX, description="Offset cursor (exclusive).")
]
LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="Entries per page.")]
PartitionQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=INT64_MAX,
        description="Kafka runtime: read a whole partition (incidents included).",
    ),
]


@router.get(
    "/v1/audit",
    summary="The audit trail, filtered and paginated",
    description="Entries in log order: who did what to which memory, when, why, and "
    "the outcome. Pass `next_after` as `after` for the next page. The Kafka runtime reads "
    "one partition: pass `namespace` or `partition`.",
    responses={200: json_content(ref("AuditPage"), "a page of entries"), **ERRORS},
)
def audit(
    caller: CallerDep,
    service: ServiceDep,
    namespace: str | None = None,
    memory_id: str | None = None,
    actor: str | None = None,
    type: str | None = None,
    status: StatusQuery = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    after: AfterQuery = None,
    as_of: AsOfQuery = None,
    limit: LimitQuery = 100,
    partition: PartitionQuery = None,
    min_offset: MinOffsetQuery = None,
) -> Response:
    q = AuditQuery(
        namespace=namespace, memory_id=memory_id, actor=actor, type=type, status=status,
        since=time_point(since, "since"), until=time_point(until, "until"), after=after,
        as_of=point(as_of, "as_of"), limit=limit,
    )  # fmt: skip
    return MsgspecResponse(service.audit(caller, q, partition=partition, min_offset=min_offset))


@router.post(
    "/v1/audit/verify",
    summary="Recompute the log's hash chain",
    description="Checks every record's chain hash against its stored bytes. `ok` is "
    "false with the first offset that does not match and why.",
    responses={
        200: json_content(
            {
                "type": "object",
                "properties": {
                    "ok": {"type": "boolean"},
                    "offset": {"type": ["integer", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "head": {"type": "integer"},
                },
            },
            "the verdict",
        )
    },
)
def verify(caller: CallerDep, service: ServiceDep) -> Response:
    head = service.head(caller)
    brk = service.verify(caller)
    return MsgspecResponse(
        {
            "ok": brk is None,
            "offset": brk.offset if brk else None,
            "reason": brk.reason if brk else None,
            "head": head,
        }
    )
