"""Governance: principals, tokens, grants and namespace policies (``/v1/principals``,
``/v1/tokens``, ``/v1/grants``, ``/v1/policies``), and the auditor's questions
(``/v1/rules``, ``/v1/who-can``). Each change is an event on the log, checked by the
service: admin over what it is about (a principal may issue and revoke its own tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import Response, StreamingResponse

from memstream.governance.export import MEDIA_TYPES, lines
from memstream.projections.policy import PermissionChange
from memstream.queries import AuditQuery
from memstream.schemas.views import AuditEntry
from memstream.wire import (
    GrantAnswer,
    GrantRequest,
    IssuedToken,
    PolicyRequest,
    PrincipalRequest,
    RevokeRequest,
    TokenRequest,
    decode_request,
    not_found_body,
    outcome_body,
    point,
    time_point,
)

from ..deps import BodyDep, CallerDep, ServiceDep
from ..openapi import ERRORS, json_content, ref, request_body
from ..responses import MsgspecResponse
from .memories import AsOfQuery, VersionQuery

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
    "/v1/memories/{memory_id:path}/original",
    summary="A memory as it was written, before its namespace's policy redacted it",
    description="Needs a `reveal` grant on the memory. A memory that was not redacted reads "
    "as it is.",
    responses={200: json_content(ref("Memory"), "the memory, with its original content"),
               404: json_content(ref("Error"), "no such memory"), **_ANSWERS},
)  # fmt: skip
async def original(
    memory_id: str, caller: CallerDep, service: ServiceDep, version: VersionQuery = None
) -> Response:
    got = await run_in_threadpool(service.reveal, caller, memory_id, version=version)
    if got is None:
        return MsgspecResponse(not_found_body(memory_id), 404)
    return MsgspecResponse(got)


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


ReportQuery = Annotated[str, Query(pattern="^(events|permissions)$")]
FormatQuery = Annotated[str, Query(pattern="^(jsonl|csv)$")]
TimeQuery = Annotated[str | None, Query(description="RFC 3339 time with timezone.")]


@router.get(
    "/v1/permissions",
    summary="The permission report: who granted what to whom, when and why",
    responses={200: json_content({"type": "array", "items": ref("PermissionChange")},
                                 "the changes, in log order"), **_ANSWERS},
)  # fmt: skip
async def permissions(
    caller: CallerDep,
    service: ServiceDep,
    since: TimeQuery = None,
    until: TimeQuery = None,
    principal: str | None = None,
    namespace: str | None = None,
) -> Response:
    got = await run_in_threadpool(
        service.permission_changes, caller, since=time_point(since, "since"),
        until=time_point(until, "until"), principal=principal, namespace=namespace,
    )  # fmt: skip
    return MsgspecResponse(got)


@router.get(
    "/v1/audit/export",
    tags=["audit"],
    summary="Export the audit trail or the permission report as JSON Lines or CSV",
    description="Streamed. `report=events`: the audit entries of a namespace / actor / time "
    "range; `report=permissions`: the permission report (actor: changes by or for it).",
    responses={200: {"description": "the export", "content": {
        "application/x-ndjson": {}, "text/csv": {}}}, **_ANSWERS},
)  # fmt: skip
async def export(
    caller: CallerDep,
    service: ServiceDep,
    report: ReportQuery = "events",
    format: FormatQuery = "jsonl",
    namespace: str | None = None,
    actor: str | None = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> Response:
    since_t, until_t = time_point(since, "since"), time_point(until, "until")
    if report == "permissions":
        records: Any = await run_in_threadpool(
            service.permission_changes, caller, since=since_t, until=until_t,
            principal=actor, namespace=namespace,
        )  # fmt: skip
        columns = PermissionChange.__struct_fields__
    else:
        q = AuditQuery(namespace=namespace, actor=actor, since=since_t, until=until_t,
                       limit=10_000)  # fmt: skip
        # checked here, before the first byte goes out; then read a page at a time
        records = await run_in_threadpool(service.audit_records, caller, q)
        columns = AuditEntry.__struct_fields__
    body = iterate_in_threadpool(iter(lines(records, format, columns)))
    return StreamingResponse(body, media_type=MEDIA_TYPES[format])
