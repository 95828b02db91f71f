"""Governance: principals, tokens, grants and namespace policies (``/v1/principals``,
``/v1/tokens``, ``/v1/grants``, ``/v1/policies``), and the auditor's questions
(``/v1/rules``, ``/v1/who-can``). Each change is an event on the log, checked by the
service: admin over what it is about (a principal may issue and revoke its own tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.wire import (
    GrantAnswer,
    GrantRequest,
    IssuedToken,
    PolicyRequest,
    PrincipalRequest,
    RevokeRequest,
    TokenRequest,
    decode_request,
    outcome_body,
    point,
)

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import ERRORS, json_content, ref, request_body
from ..responses import MsgspecResponse
from .memories import AsOfQuery

router = APIRouter(tags=["governance"])
_OBJECT = {"type": "object"}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: json_content(ref("Error"), "no token, or a token that does not authenticate"),
    403: json_content(ref("Error"), "the caller lacks the grant named in `missing`"),
    409: json_content(ref("Error"), "refused (an unknown principal, token or grant)"),
}


def _optional(body: bytes) -> bytes:
    return body if body.strip() else b"{}"


@router.post(
    "/v1/principals",
    summary="Add a principal, or change its kind, groups or whether it is disabled",
    openapi_extra=request_body(ref("PrincipalRequest")),
    responses={200: json_content(ref("Outcome"), "the outcome"), **_ANSWERS},
)
async def principal(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: PrincipalRequest = decode_request(body, PrincipalRequest)
    got = await run_in_threadpool(
        service.set_principal, caller, req.name, kind=req.kind, groups=req.groups,
        disabled=req.disabled, reason=req.reason,
    )  # fmt: skip
    return MsgspecResponse(outcome_body(got))


@router.post(
    "/v1/tokens",
    status_code=201,
    summary="Issue an API token (its secret is in this answer only)",
    openapi_extra=request_body(ref("TokenRequest")),
    responses={201: json_content(ref("IssuedToken"), "the token"), **_ANSWERS},
)
async def issue(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: TokenRequest = decode_request(body, TokenRequest)
    token_id, token = await run_in_threadpool(
        service.issue_token, caller, req.principal, expires_at=req.expires_at, reason=req.reason
    )
    return MsgspecResponse(
        IssuedToken(token_id=token_id, principal=req.principal, token=token), 201
    )


@router.delete(
    "/v1/tokens/{token_id}",
    summary="Revoke a token",
    responses={200: json_content(ref("Outcome"), "the outcome"), **_ANSWERS},
)
async def revoke_token(
    token_id: str, body: BodyDep, caller: CallerDep, service: ServiceDep
) -> Response:
    req: RevokeRequest = decode_request(_optional(body), RevokeRequest)
    got = await run_in_threadpool(service.revoke_token, caller, token_id, reason=req.reason)
    return MsgspecResponse(outcome_body(got))


@router.post(
    "/v1/grants",
    status_code=201,
    summary="Grant a principal, a group or everyone modes on a namespace pattern or a memory",
    openapi_extra=request_body(ref("GrantRequest")),
    responses={201: json_content(ref("GrantAnswer"), "the grant's id and outcome"), **_ANSWERS},
)
async def grant(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: GrantRequest = decode_request(body, GrantRequest)
    grant_id, got = await run_in_threadpool(
        service.grant, caller, req.to, req.modes, req.object, app=req.app, purpose=req.purpose,
        session=req.session, expires_at=req.expires_at, reason=req.reason, grant_id=req.grant_id,
    )  # fmt: skip
    return MsgspecResponse(GrantAnswer(grant_id=grant_id, outcome=outcome_body(got)), 201)


@router.delete(
    "/v1/grants/{grant_id}",
    summary="Withdraw a grant",
    responses={200: json_content(ref("Outcome"), "the outcome"), **_ANSWERS},
)
async def revoke(grant_id: str, body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: RevokeRequest = decode_request(_optional(body), RevokeRequest)
    got = await run_in_threadpool(service.revoke, caller, grant_id, reason=req.reason)
    return MsgspecResponse(outcome_body(got))


@router.put(
    "/v1/policies",
    summary="Set the policy (sensitive content, retention) of the namespaces a pattern selects",
    openapi_extra=request_body(ref("PolicyRequest")),
    responses={200: json_content(ref("Outcome"), "the outcome"), **_ANSWERS},
)
async def policy(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: PolicyRequest = decode_request(body, PolicyRequest)
    got = await run_in_threadpool(
        service.set_policy, caller, req.object, sensitive=req.sensitive,
        expire_after_idle_days=req.expire_after_idle_days,
        erase_after_expired_days=req.erase_after_expired_days, reason=req.reason,
    )  # fmt: skip
    return MsgspecResponse(outcome_body(got))


@router.get(
    "/v1/rules",
    summary="Principals, grants, tokens (no secrets) and policies, now or as of a moment",
    description="The whole set takes audit on `*`; any other principal sees its own.",
    responses={200: json_content(ref("Rules"), "the rules"), **_ANSWERS},
)
async def rules(caller: CallerDep, service: ServiceDep, as_of: AsOfQuery = None) -> Response:
    got = await run_in_threadpool(service.rules, caller, point(as_of, "as_of"))
    return MsgspecResponse(got)


ModeQuery = Annotated[str, Query(pattern="^(read|write|audit|reveal|admin)$")]


@router.get(
    "/v1/who-can",
    summary="The principals that may read (write, ...) a namespace or a memory, now or then",
    responses={200: json_content({"type": "array", "items": {"type": "string"}}, "principals"),
               **_ANSWERS},
)  # fmt: skip
async def who_can(
    caller: CallerDep,
    service: ServiceDep,
    mode: ModeQuery = "read",
    namespace: str | None = None,
    memory_id: str | None = None,
    as_of: AsOfQuery = None,
) -> Response:
    got = await run_in_threadpool(
        service.who_can, caller, mode, namespace=namespace, memory_id=memory_id,
        as_of=point(as_of, "as_of"),
    )  # fmt: skip
    return MsgspecResponse(got)
