"""``POST /v1/retention/run``: one pass of the retention scheduler (docs/governance.md)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream import validation
from memstream.wire import RetentionRequest, decode_request

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import error_content, json_content, ref, request_body
from ..responses import MsgspecResponse

router = APIRouter(tags=["governance"])


@router.post(
    "/v1/retention/run",
    summary="Expire and erase the memories whose TTL or retention rule is due",
    description="One pass of the retention scheduler, now or as if it were `now`: an "
    "`expire` or `erase` event (actor `memstream:scheduler`) for every memory whose TTL, "
    "expiry time or retention rule has fallen due, and for each the rule, when it fell "
    "due and the outcome. With `dry_run` nothing is appended. The server also runs a pass "
    "every MEMSTREAM_RETENTION_INTERVAL seconds by itself.",
    openapi_extra=request_body(ref("RetentionRequest")),
    responses={
        200: json_content(ref("RetentionReport"), "the memories due and their outcomes"),
        400: error_content("now is not an RFC 3339 time with a timezone, or the body is bad"),
        409: error_content("the store is read-only (a dry run is allowed)"),
        501: error_content("this process runs no retention scheduler"),
        503: error_content("the scheduler has not caught up with the log in time"),
    },
)
async def run_retention(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: RetentionRequest = decode_request(body, RetentionRequest)
    now = validation.time(req.now, "body.now")
    report = await run_in_threadpool(
        lambda: service.run_retention(caller, now=now, dry_run=req.dry_run)
    )
    return MsgspecResponse(report)
