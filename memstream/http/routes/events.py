"""``POST /v1/events``: append one event or a batch.

Events are decoded by the backend's own codec, not by pydantic, so HTTP refuses exactly
what the SDK and the Kafka path refuse, with the same message, JSON path and batch index
(``422 {"error": "malformed", "message", "field", "index"}``), and a refused batch appends
nothing.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.errors import rejection

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import error_content, json_content, ref, request_body
from ..responses import MsgspecResponse, error

router = APIRouter(tags=["events"])


@router.post(
    "/v1/events",
    summary="Append one event or a batch",
    description="The body is one event object or a JSON array of them; a batch is "
    "appended atomically (all or none). Each event is decided in log order. A rejected "
    "event is still appended (the audit shows it): in a batch its outcome is part of "
    "the 200 list; a single rejected event answers 409 with its outcome. A caller that "
    "names its principal (X-Memstream-Principal) is the actor of the events it writes.",
    openapi_extra=request_body(
        {"oneOf": [ref("Event"), {"type": "array", "items": ref("Event"), "minItems": 1}]}
    ),
    responses={
        200: json_content(ref("Outcomes"), "one outcome per event, in order"),
        409: error_content("a single event was rejected (with `outcomes`)"),
        413: error_content("the body, or an event's payload, is over the size limit (`limit`)"),
        422: error_content("malformed: nothing was appended"),
    },
)  # fmt: skip
async def publish(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    single = body.lstrip()[:1] != b"["
    outcomes = await run_in_threadpool(service.publish_json, caller, body)
    public = [o.public() for o in outcomes]
    if single and not outcomes[0].accepted:
        o = outcomes[0]
        return error(409, "rejected", str(rejection(o)), code=o.code, outcomes=public)
    return MsgspecResponse({"outcomes": public})
