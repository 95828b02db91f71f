"""The HTTP API: a FastAPI app over one open :class:`MemoryStore`.

Design choices, and why:

- **Events are decoded by the store's own codec, not by pydantic.** ``POST /v1/events``
  reads the raw body and hands it to :class:`EventCodec` (via ``publish_json``), so HTTP
  refuses exactly what the SDK and the Kafka path refuse, with the same message, JSON path
  and batch index (``422 {"error": "malformed", "message", "field", "index"}``), and a
  refused batch appends nothing.
- **Responses are encoded by msgspec** (:class:`MsgspecResponse`): the read types are
  msgspec Structs, encoding them directly is fast and writes datetimes as RFC 3339.
- **Store calls block** (SQLite, DuckDB, the projector's condition variable), so every one
  runs in the threadpool: plain ``def`` endpoints, or ``run_in_threadpool``; the event
  loop stays free to accept requests and to shut down gracefully.
- **Errors are typed and stable**: every error body has ``error`` (a code a program can
  switch on) and ``message`` (a sentence naming the field or memory and the fix). The
  Python client (:mod:`memstream.client`) maps them back onto the SDK's exceptions.
- **The OpenAPI document is generated from the same types**: the schemas of ``Memory``,
  ``Version``, ``AuditPage``, ``Outcome`` and of every event type come from msgspec's JSON
  Schema of the Structs (and the store's event registry), so the spec cannot drift.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from memstream import __version__
from memstream.errors import (
    MalformedEvent,
    NotCaughtUp,
    ProjectorFailed,
    StoreReadOnly,
    rejection,
)
from memstream.schemas.events import Event, Registry
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, SearchHit, Version
from memstream.sdk import MemoryStore
from memstream.streams.embedded import LOG_FILE
from memstream.streams.log import EmbeddedLog

__all__ = ["MsgspecResponse", "create_app", "default_max_body_bytes"]

_encoder = msgspec.json.Encoder()
_REF = "#/components/schemas/{name}"


def default_max_body_bytes(max_event_bytes: int) -> int:
    """The request-body limit when none is configured: room for a large batch of events
    at the event limit, but bounded, so one request cannot exhaust the server's memory."""
    return max(32 * 1024 * 1024, 8 * max_event_bytes)


class MsgspecResponse(Response):
    """A JSON response encoded by msgspec (Structs, datetimes as RFC 3339)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


# -- errors --------------------------------------------------------------------------------------


class BadRequest(ValueError):
    """A request parameter is invalid; ``field`` names it (``query.as_of``, ``body.dest``)."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int, exact: bool):
        self.size, self.limit = size, limit
        amount = f"{size} bytes" if exact else f"more than {limit} bytes"
        super().__init__(
            f"request body is {amount}, over this server's limit of {limit} bytes; send "
            "smaller batches, or start the server with a larger --max-body-bytes"
        )


def _error(status: int, error: str, message: str, **extra: Any) -> MsgspecResponse:
    headers = extra.pop("headers", None)
    return MsgspecResponse({"error": error, "message": message, **extra}, status, headers)


def _install_error_handlers(app: FastAPI, store: MemoryStore) -> None:
    @app.exception_handler(MalformedEvent)
    async def malformed(_: Request, e: MalformedEvent) -> Response:
        return MsgspecResponse(e.to_dict(), 422)

    @app.exception_handler(BodyTooLarge)
    async def too_large(_: Request, e: BodyTooLarge) -> Response:
        return _error(413, "too_large", str(e), field=None, index=None, limit=e.limit)

    @app.exception_handler(NotCaughtUp)
    async def not_caught_up(_: Request, e: NotCaughtUp) -> Response:
        return _error(
            503,
            "not_caught_up",
            str(e),
            wanted=e.wanted,
            reached=e.reached,
            lag=e.wanted - e.reached,
            wait=store.runtime.options.read_wait,
            headers={"retry-after": "1"},
        )

    @app.exception_handler(ProjectorFailed)
    async def projector_failed(_: Request, e: ProjectorFailed) -> Response:
        return _error(503, "projector_failed", str(e))

    @app.exception_handler(StoreReadOnly)
    async def read_only(_: Request, e: StoreReadOnly) -> Response:
        return _error(409, "read_only", str(e))

    @app.exception_handler(FileExistsError)
    async def exists(_: Request, e: FileExistsError) -> Response:
        return _error(409, "exists", str(e))

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, e: BadRequest) -> Response:
        return _error(400, "bad_request", str(e), field=e.field)

    @app.exception_handler(ValueError)
    async def value_error(_: Request, e: ValueError) -> Response:
        # The store raises ValueError only for caller mistakes (a limit out of range, a
        # naive time, a min_offset beyond the log's end); its message names the parameter.
        return _error(400, "bad_request", str(e), field=None)

    @app.exception_handler(RequestValidationError)
    async def invalid_params(_: Request, e: RequestValidationError) -> Response:
        errors = e.errors()
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{field}: {first.get('msg', 'invalid value')}"
        if "input" in first and first["input"] is not None:
            message += f" (got {first['input']!r})"
        return _error(400, "bad_request", message, field=field or None)

    @app.exception_handler(Exception)
    async def internal(_: Request, e: Exception) -> Response:
        # Starlette logs the traceback; the client gets JSON in the API's error shape.
        return _error(
            500, "internal", f"internal error ({e.__class__.__name__}); see the server log"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        if e.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}; see /docs for the API"
            return _error(404, "no_route", message)
        if e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
            return _error(405, "method_not_allowed", message)
        return _error(e.status_code, "http", str(e.detail))


# -- parameters ----------------------------------------------------------------------------------

# Module-level, so FastAPI can resolve them from the endpoints' (string) annotations.
AsOfQuery = Annotated[
    str | None,
    Query(description="An offset (integer) or an RFC 3339 time with timezone (`recorded_at`)."),
]
MinOffsetQuery = Annotated[
    int | None, Query(ge=0, description="Wait (bounded) until the projection holds this offset.")
]
VersionQuery = Annotated[int | None, Query(ge=1, description="A version of the content.")]
StatusQuery = Annotated[str | None, Query(pattern="^(accepted|rejected)$")]
TimeQuery = Annotated[str | None, Query(description="RFC 3339 time with timezone (recorded_at).")]
AfterQuery = Annotated[int | None, Query(description="Offset cursor (exclusive).")]
LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="Entries per page.")]


def _point(value: str | None, field: str) -> datetime | int | None:
    """An ``as_of`` query value: an integer offset or an RFC 3339 time with its timezone."""
    if value is None:
        return None
    from memstream.client import parse_point

    try:
        return parse_point(value, field)
    except ValueError as e:
        raise BadRequest(str(e), field=f"query.{field}") from None


def _time(value: str | None, field: str) -> datetime | None:
    point = _point(value, field)
    if isinstance(point, int):
        raise BadRequest(
            f"{field}: expected an RFC 3339 time such as 2026-01-01T12:00:00Z, not an offset "
            "(use `after` to filter by offset)",
            field=f"query.{field}",
        )
    return point


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes.

    A declared Content-Length over the limit is refused without reading. A body that grows
    past the limit while streaming is read to its end (up to a bound) and discarded, so a
    client that sends everything before reading the answer still gets the 413, not a reset.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit, exact=True)
    chunks: list[bytes] = []
    size = 0
    drain_bound = limit * 4
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            if size > drain_bound:
                break
            continue
        chunks.append(chunk)
    if size > limit:
        raise BodyTooLarge(size, limit, exact=size <= drain_bound)
    return b"".join(chunks)


class BackupRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/backup``."""

    dest: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="Absolute path, on the server's filesystem, of a new (or empty) "
            "directory that receives the copy.",
        ),
    ]


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/replay``."""

    into: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="Absolute path of a new (or empty) directory for the replayed store.",
        ),
    ]
    to: Annotated[
        int | str | None,
        msgspec.Meta(description="Last offset (inclusive) or RFC 3339 time to replay up to."),
    ] = None


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/search`` (the parameters of ``MemoryStore.search``)."""

    query: Annotated[str | None, msgspec.Meta(description="Text to search for.")] = None
    vector: Annotated[
        list[float] | None, msgspec.Meta(description="A query vector (the model's dimension).")
    ] = None
    namespaces: list[str] | None = None
    k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    tags_any: list[str] | None = None
    tags_all: list[str] | None = None
    states: list[str] | None = None
    kinds: list[str] | None = None
    created_after: str | None = None
    created_before: str | None = None
    updated_after: str | None = None
    updated_before: str | None = None
    metadata: dict[str, Any] | None = None
    include_archived: bool = False
    as_of: Annotated[
        int | str | None, msgspec.Meta(description="An offset or an RFC 3339 time.")
    ] = None
    exact: bool = False
    # The bounds go on the float, not on the Optional (msgspec's JSON Schema refuses those).
    alpha: (
        Annotated[
            float,
            msgspec.Meta(ge=0.0, le=1.0, description="Semantic weight: 1 semantic, 0 keyword."),
        ]
        | None
    ) = None
    min_offset: Annotated[int, msgspec.Meta(ge=0)] | None = None


def _decode_request(body: bytes, cls: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=cls)
    except msgspec.ValidationError as e:
        text = str(e)
        path = text.split(" - at `", 1)[1].rstrip("`") if " - at `" in text else None
        field = "body" + path[1:] if path else "body"
        raise BadRequest(f"{field}: {text.split(' - at `', 1)[0]}", field=field) from None
    except msgspec.DecodeError as e:
        raise BadRequest(f"the body is not valid JSON ({e})", field="body") from None


def _absolute(path: str, field: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        raise BadRequest(
            f"{field} must be an absolute path on the server's filesystem, not {path!r} "
            "(a relative path would depend on where the server was started)",
            field=f"body.{field}",
        )
    return p


def _log_records(root: Path) -> int:
    """The number of records in the log of the store at ``root`` (a fresh copy)."""
    log = EmbeddedLog(root / LOG_FILE, create=False)
    try:
        return log.next_offset
    finally:
        log.close()


# -- OpenAPI -------------------------------------------------------------------------------------


def _json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "description": "A stable code: malformed, rejected, too_large, not_found, "
            "not_caught_up, projector_failed, read_only, exists, bad_request, no_route.",
        },
        "message": {"type": "string", "description": "What is wrong and how to fix it."},
        "field": {
            "type": ["string", "null"],
            "description": "JSON path of the offending field ($.payload.text) or parameter.",
        },
        "index": {
            "type": ["integer", "null"],
            "description": "Position of the offending event in a batch.",
        },
    },
    "additionalProperties": True,
}

_OUTCOMES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["outcomes"],
    "properties": {"outcomes": {"type": "array", "items": _ref("Outcome")}},
}


def _components(registry: Registry) -> dict[str, Any]:
    """JSON Schemas of the API's types, generated from the msgspec Structs.

    The event schema is the envelope of :class:`Event` with ``payload`` as a ``oneOf`` of
    the registered payload types (``type`` selects which), so it always matches the
    registry this store decodes with.
    """
    payloads = [t.payload for t in registry.types.values()]
    _, comps = msgspec.json.schema_components(
        [
            Event,
            Memory,
            list[Version],
            AuditPage,
            Outcome,
            BackupRequest,
            ReplayRequest,
            SearchRequest,
            SearchHit,
            *payloads,
        ],
        ref_template=_REF,
    )
    event = comps["Event"]
    event["properties"].pop("clear", None)
    event["properties"]["payload"] = {
        "description": "The operation's content; its shape depends on `type`: "
        + ", ".join(f"`{t.name}` → {t.payload.__name__}" for t in registry.types.values()),
        "oneOf": [_ref(p.__name__) for p in payloads],
    }
    event["properties"]["type"]["enum"] = registry.names()
    event["description"] = (
        "A memory event as a producer sends it. The payload is encrypted before it reaches "
        "the log. Unknown fields are refused."
    )
    comps.pop("Payload", None)
    outcome = comps["Outcome"]
    for internal in ("changes", "destroy_key"):
        outcome["properties"].pop(internal, None)
    comps.pop("MemState", None)
    comps["Error"] = _ERROR_SCHEMA
    comps["Outcomes"] = _OUTCOMES_SCHEMA
    return comps


_DESCRIPTION = """\
An event-sourced memory store for LLM agents. Every memory operation is an immutable,
encrypted event on a hash-chained log; current state, version chains and the audit trail
are projections of it.

* Writes return where each event landed (`offset`); pass it as `min_offset` to a read to
  read your own writes (the read waits, bounded, and answers 503 with the lag otherwise).
* Malformed events (not JSON, unknown type, missing or mistyped field, future
  `schema_version`, oversize) are refused with 422 and never appended. Well-formed
  operations the lifecycle forbids are appended, decided once, and come back `rejected`
  with a reason (409 for a single event).
"""


def _install_openapi(app: FastAPI, registry: Registry) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                _components(registry)
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- the app -------------------------------------------------------------------------------------


def create_app(store: MemoryStore, *, max_body_bytes: int | None = None) -> FastAPI:
    """The HTTP API over ``store`` (already open; the caller closes it after serving).

    ``max_body_bytes`` bounds a request body (413 beyond it); the default leaves room for
    large batches (:func:`default_max_body_bytes`). Single events are also bounded by the
    store's ``max_event_bytes`` (a 422 naming ``$.payload``).
    """
    runtime = store.runtime
    limit = max_body_bytes or default_max_body_bytes(runtime.options.max_event_bytes)
    app = FastAPI(
        title="memstream",
        version=__version__,
        description=_DESCRIPTION,
        default_response_class=MsgspecResponse,
    )
    app.state.store = store
    app.state.max_body_bytes = limit
    _install_error_handlers(app, store)
    _install_openapi(app, runtime.codec.registry)

    def not_found(memory_id: str, detail: str = "") -> MsgspecResponse:
        return _error(
            404,
            "not_found",
            f"memory {memory_id} does not exist{detail}; check the id, or list the audit "
            "(GET /v1/audit) to see what happened to it",
            memory_id=memory_id,
        )

    # -- service -------------------------------------------------------------------------

    @app.get(
        "/health",
        tags=["service"],
        summary="The process is up",
        responses={200: _json_content({"type": "object"}, "pid, store path and version")},
    )
    async def health() -> Response:
        return MsgspecResponse(
            {"status": "ok", "pid": os.getpid(), "store": str(store.path), "version": __version__}
        )

    @app.get(
        "/ready",
        tags=["service"],
        summary="The store is open and its projector runs",
        description="Reports the head offset of the log, the offset the projection reached, "
        "and the lag between them. 503 when the store is closed or the projector stopped.",
        responses={
            200: _json_content({"type": "object"}, "status, head, projected, lag"),
            503: _json_content(_ref("Error"), "the store cannot serve reads or writes"),
        },
    )
    def ready() -> Response:
        alive = runtime.projector_alive
        head, projected = runtime.head, runtime.projected_offset
        body: dict[str, Any] = {
            "status": "ready" if alive else "unavailable",
            "store": str(store.path),
            "head": head,
            "projected": projected,
            "lag": head - projected,
            "projector_alive": alive,
            "read_only": runtime.read_only,
        }
        if not alive:
            try:
                runtime.wait_for(None)
                body["reason"] = "the store is closed"
            except Exception as e:  # the projector's failure, as a sentence
                body["reason"] = str(e)
            body["error"] = "unavailable"
            body["message"] = body["reason"]
        return MsgspecResponse(body, 200 if alive else 503)

    # -- writes --------------------------------------------------------------------------

    @app.post(
        "/v1/events",
        tags=["events"],
        summary="Append one event or a batch",
        description="The body is one event object or a JSON array of them; a batch is "
        "appended atomically (all or none). Each event is decided in log order. A rejected "
        "event is still appended (the audit shows it): in a batch its outcome is part of "
        "the 200 list; a single rejected event answers 409 with its outcome.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _ref("Event"),
                                {"type": "array", "items": _ref("Event"), "minItems": 1},
                            ]
                        }
                    }
                },
            }
        },
        responses={
            200: _json_content(_ref("Outcomes"), "one outcome per event, in order"),
            409: _json_content(_ref("Error"), "a single event was rejected (with `outcomes`)"),
            413: _json_content(_ref("Error"), "the body is over the size limit"),
            422: _json_content(_ref("Error"), "malformed: nothing was appended"),
        },
    )
    async def publish(request: Request) -> Response:
        body = await _read_body(request, limit)
        single = body.lstrip()[:1] != b"["
        outcomes = await run_in_threadpool(store.publish_json, body)
        public = [o.public() for o in outcomes]
        if single and not outcomes[0].accepted:
            o = outcomes[0]
            return _error(409, "rejected", str(rejection(o)), code=o.code, outcomes=public)
        return MsgspecResponse({"outcomes": public})

    # -- reads ---------------------------------------------------------------------------

    read_errors: dict[int | str, dict[str, Any]] = {
        400: _json_content(_ref("Error"), "a parameter is invalid (the message names it)"),
        503: _json_content(_ref("Error"), "min_offset not reached in time (with the lag)"),
    }

    @app.get(
        "/v1/memories/{memory_id:path}/history",
        tags=["memories"],
        summary="A memory's version chain",
        description="Every version, oldest first; with include_parents the chains of the "
        "memories it was merged from, up to the merged version.",
        responses={
            200: _json_content({"type": "array", "items": _ref("Version")}, "the versions"),
            **read_errors,
        },
    )
    def history(
        memory_id: str,
        include_parents: bool = True,
        as_of: AsOfQuery = None,
        min_offset: MinOffsetQuery = None,
    ) -> Response:
        versions = store.history(
            memory_id,
            include_parents=include_parents,
            as_of=_point(as_of, "as_of"),
            min_offset=min_offset,
        )
        return MsgspecResponse(versions)

    @app.get(
        "/v1/memories/{memory_id:path}",
        tags=["memories"],
        summary="A memory now, at a version, or as of a point in the log",
        responses={
            200: _json_content(_ref("Memory"), "the memory"),
            404: _json_content(_ref("Error"), "no such memory (at that version or point)"),
            **read_errors,
        },
    )
    def get_memory(
        memory_id: str,
        version: VersionQuery = None,
        as_of: AsOfQuery = None,
        min_offset: MinOffsetQuery = None,
    ) -> Response:
        point = _point(as_of, "as_of")
        m = store.get(memory_id, version=version, as_of=point, min_offset=min_offset)
        if m is None:
            detail = f" at version {version}" if version is not None else ""
            detail += f" as of {as_of}" if as_of is not None else ""
            return not_found(memory_id, detail)
        return MsgspecResponse(m)

    @app.get(
        "/v1/audit",
        tags=["audit"],
        summary="The audit trail, filtered and paginated",
        description="Entries in log order: who did what to which memory, when, why, and "
        "the outcome. Pass `next_after` as `after` for the next page.",
        responses={200: _json_content(_ref("AuditPage"), "a page of entries"), **read_errors},
    )
    def audit(
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
        min_offset: MinOffsetQuery = None,
    ) -> Response:
        page = store.audit(
            namespace=namespace,
            memory_id=memory_id,
            actor=actor,
            type=type,
            status=status,
            since=_time(since, "since"),
            until=_time(until, "until"),
            after=after,
            as_of=_point(as_of, "as_of"),
            limit=limit,
            min_offset=min_offset,
        )
        return MsgspecResponse(page)

    @app.post(
        "/v1/search",
        tags=["memories"],
        summary="Search memories by meaning and by words, with filters",
        description="Semantic (vector) and keyword (BM25) rankings fused by weighted "
        "reciprocal rank (`alpha` = semantic weight). Filters narrow the candidates exactly. "
        "`exact` scores every candidate by brute force; `as_of` searches the versions valid "
        "at an offset or time. See docs/search.md.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("SearchRequest")}},
            }
        },
        responses={
            200: _json_content(
                {"type": "object", "properties": {"hits": {"type": "array",
                                                           "items": _ref("SearchHit")}}},
                "the hits, best first",
            ),
            **read_errors,
        },
    )  # fmt: skip
    async def search(request: Request) -> Response:
        req: SearchRequest = _decode_request(await _read_body(request, limit), SearchRequest)
        if store.semantic is None:
            return _error(
                503, "search_disabled",
                "this server's store was opened without its search indexes "
                "($MEMSTREAM_SEMANTIC=0); restart it with search enabled",
            )  # fmt: skip
        as_of = _point(req.as_of, "as_of") if isinstance(req.as_of, str) else req.as_of
        times = {
            name: _time(getattr(req, name), name)
            for name in ("created_after", "created_before", "updated_after", "updated_before")
        }

        def run() -> list[SearchHit]:
            return store.search(
                req.query, vector=req.vector, namespaces=req.namespaces, k=req.k,
                tags_any=req.tags_any, tags_all=req.tags_all, states=req.states,
                kinds=req.kinds, metadata=req.metadata, include_archived=req.include_archived,
                as_of=as_of, exact=req.exact, alpha=req.alpha, min_offset=req.min_offset,
                **times,
            )  # fmt: skip

        return MsgspecResponse({"hits": await run_in_threadpool(run)})

    @app.post(
        "/v1/audit/verify",
        tags=["audit"],
        summary="Recompute the log's hash chain",
        description="Checks every record's chain hash against its stored bytes. `ok` is "
        "false with the first offset that does not match and why.",
        responses={
            200: _json_content(
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
    def verify() -> Response:
        head = runtime.head
        brk = store.verify()
        return MsgspecResponse(
            {
                "ok": brk is None,
                "offset": brk.offset if brk else None,
                "reason": brk.reason if brk else None,
                "head": head,
            }
        )

    # -- copies --------------------------------------------------------------------------

    @app.post(
        "/v1/backup",
        tags=["copies"],
        summary="A consistent copy of the log and keys, while serving",
        description="Open the copy as a store (`MemoryStore.open`, or `memstream --store`) "
        "to restore: its projections are rebuilt from the log.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("BackupRequest")}},
            }
        },
        responses={
            200: _json_content({"type": "object"}, "dest and the number of records copied"),
            400: _json_content(_ref("Error"), "dest is not absolute or not writable"),
            409: _json_content(_ref("Error"), "dest exists and is not empty"),
        },
    )
    async def backup(request: Request) -> Response:
        req: BackupRequest = _decode_request(await request.body(), BackupRequest)
        dest = _absolute(req.dest, "dest")

        def copy() -> dict[str, Any]:
            try:
                out = store.backup(dest)
            except FileExistsError:
                raise
            except OSError as e:
                raise BadRequest(f"cannot write the backup to {dest}: {e}", "body.dest") from None
            records = _log_records(out)
            return {"dest": str(out), "records": records, "head": records - 1}

        return MsgspecResponse(await run_in_threadpool(copy))

    @app.post(
        "/v1/replay",
        tags=["copies"],
        summary="Copy the log up to a point into a new read-only store",
        description="The server copies the log prefix (consistently, while serving); open "
        "the directory as a store to rebuild its projections (the CLI's `replay` does, with "
        "a progress bar). `to` is an offset (inclusive) or an RFC 3339 time.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ReplayRequest")}},
            }
        },
        responses={
            200: _json_content({"type": "object"}, "into, to_offset and records copied"),
            400: _json_content(_ref("Error"), "into or to is invalid"),
            409: _json_content(_ref("Error"), "into exists and is not empty"),
        },
    )
    async def replay(request: Request) -> Response:
        req: ReplayRequest = _decode_request(await request.body(), ReplayRequest)
        into = _absolute(req.into, "into")
        to = req.to
        point = _point(to, "to") if isinstance(to, str) else to

        def copy() -> dict[str, Any]:
            stop: int | None = None
            if isinstance(point, int):
                stop = point + 1
            elif isinstance(point, datetime):
                stop = runtime.log.offset_at(int(point.timestamp() * 1_000_000)) + 1
            origin = f"replay to {to}" if to is not None else "replay"
            try:
                runtime.backup(into, stop=stop, origin=origin)
            except FileExistsError:
                raise
            except OSError as e:
                raise BadRequest(f"cannot write the replay to {into}: {e}", "body.into") from None
            records = _log_records(into)
            return {"into": str(into), "records": records, "to_offset": records - 1}

        return MsgspecResponse(await run_in_threadpool(copy))

    return app
