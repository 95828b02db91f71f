"""``POST /v1/search``: the body is decoded once into a ``SearchQuery``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.wire import SearchRequest, decode_request

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import ERRORS, json_content, ref, request_body
from ..responses import MsgspecResponse

router = APIRouter(tags=["memories"])


@router.post(
    "/v1/search",
    summary="Search memories by meaning and by words, with filters",
    description="By default a memory's score is its semantic (vector) similarity plus a "
    "small bonus for the keyword (BM25) score of its own text; with `alpha` (the semantic "
    "weight: 1 semantic only, 0 keyword only) the two rankings are fused by weighted "
    "reciprocal rank instead. Filters narrow the candidates exactly. "
    "`exact` scores every candidate by brute force; `as_of` searches the versions valid "
    "at an offset or time. `query_hints` (default on) ranks memories dated in a period the "
    "query names, then those said by a speaker it names, first. "
    "The Kafka runtime gathers from every partition the namespaces "
    "name (all without any). See docs/search.md.",
    openapi_extra=request_body(ref("SearchRequest")),
    responses={
        200: json_content(
            {"type": "object", "properties": {"hits": {"type": "array",
                                                       "items": ref("SearchHit")}}},
            "the hits, best first",
        ),
        **ERRORS,
    },
)  # fmt: skip
async def search(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: SearchRequest = decode_request(body, SearchRequest)
    q = req.to_query()
    hits = await run_in_threadpool(
        service.search, caller, q, min_offset=req.min_offset, partitions=req.partitions
    )
    return MsgspecResponse({"hits": hits})
