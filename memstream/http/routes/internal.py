"""``POST /v1/internal/subscriptions/{name}/partitions``: a worker's call to the owner of
some partitions of a subscription (the Kafka runtime): acknowledge, reject, seek, list or
remove parked deliveries there. Checked like any call (the consumer's principal, passed on
by the worker that forwards it); not part of the documented API."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.errors import BadRequest

from ..deps import BodyDep, CallerDep, ServiceDep
from ..responses import MsgspecResponse

router = APIRouter(tags=["internal"], include_in_schema=False)


@router.post("/v1/internal/subscriptions/{name}/partitions")
async def partitions(name: str, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise BadRequest(f"the body is not JSON: {e}", field="body") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be an object", field="body")
    result = await run_in_threadpool(service.subscription_partitions, caller, name, data)
    return MsgspecResponse({"result": result})
