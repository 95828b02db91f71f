"""The OpenAPI document: routes from FastAPI, schemas from the msgspec types.

The schemas of ``Memory``, ``Version``, ``AuditPage``, ``Outcome`` and of every event type
come from msgspec's JSON Schema of the Structs (and the backend's event registry), so the
spec cannot drift from what the API decodes and encodes.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from memstream.governance.access_log import AccessPage
from memstream.governance.retention import RetentionReport
from memstream.projections.policy import PermissionChange, Rules
from memstream.schemas.events import Event, Registry
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import (
    AuditPage,
    Delivery,
    Heartbeat,
    Memory,
    MemoryPage,
    ParkedDelivery,
    PublicationView,
    SearchHit,
    SubscriptionView,
    Version,
)
from memstream.wire import (
    AckRequest,
    AddRequest,
    BackupRequest,
    ChangeRequest,
    EraseSubjectRequest,
    GrantAnswer,
    GrantRequest,
    IssuedToken,
    NackRequest,
    PolicyRequest,
    PrincipalRequest,
    PublicationRequest,
    ReasonRequest,
    ReplayRequest,
    RetentionRequest,
    ReviseRequest,
    RevokeRequest,
    SearchRequest,
    SeekRequest,
    SubscriptionRequest,
    TokenRequest,
    UnparkRequest,
)

__all__ = [
    "DESCRIPTION",
    "ERRORS",
    "error_content",
    "install_openapi",
    "request_body",
    "json_content",
    "ref",
]

_REF = "#/components/schemas/{name}"


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "description": "A stable code: malformed, rejected, too_large, not_found, "
            "not_caught_up, projector_failed, read_only, exists, bad_request, no_route, "
            "forbidden, unauthenticated, closed, terms.",
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


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body the route decodes itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def error_content(description: str) -> dict[str, Any]:
    return json_content(ref("Error"), description)


#: the documented answers of every read
ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_content("a parameter is invalid (the message names it)"),
    503: error_content("min_offset not reached in time, or a partition catching up (the lag)"),
}

_OUTCOMES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["outcomes"],
    "properties": {"outcomes": {"type": "array", "items": ref("Outcome")}},
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
            MemoryPage,
            Outcome,
            AddRequest,
            ReviseRequest,
            ChangeRequest,
            EraseSubjectRequest,
            BackupRequest,
            ReplayRequest,
            RetentionRequest,
            RetentionReport,
            SearchRequest,
            SearchHit,
            PrincipalRequest,
            TokenRequest,
            IssuedToken,
            GrantRequest,
            GrantAnswer,
            PolicyRequest,
            RevokeRequest,
            Rules,
            PermissionChange,
            AccessPage,
            SubscriptionRequest,
            SeekRequest,
            AckRequest,
            NackRequest,
            UnparkRequest,
            PublicationRequest,
            ReasonRequest,
            SubscriptionView,
            PublicationView,
            ParkedDelivery,
            Delivery,
            Heartbeat,
            *payloads,
        ],
        ref_template=_REF,
    )
    event = comps["Event"]
    event["properties"].pop("clear", None)
    event["properties"]["payload"] = {
        "description": "The operation's content; its shape depends on `type`: "
        + ", ".join(f"`{t.name}` → {t.payload.__name__}" for t in registry.types.values()),
        "oneOf": [ref(p.__name__) for p in payloads],
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
    outcome["properties"]["recorded_at"] = {
        "type": "string",
        "format": "date-time",
        "description": "When the log recorded the event (RFC 3339, UTC).",
    }
    comps.pop("MemState", None)
    comps["Error"] = _ERROR_SCHEMA
    comps["Outcomes"] = _OUTCOMES_SCHEMA
    return comps


DESCRIPTION = """\
An event-sourced memory store for LLM agents. Every memory operation is an immutable,
encrypted event on a hash-chained log; current state, version chains and the audit trail
are projections of it.

* Writes return where each event landed (`offset`); pass it as `min_offset` to a read to
  read your own writes (the read waits, bounded, and answers 503 with the lag otherwise).
* Malformed events (not JSON, unknown type, missing or mistyped field, future
  `schema_version`) are refused with 422 and never appended; an oversize payload or body
  with 413, naming the limit. Well-formed
  operations the lifecycle forbids are appended, decided once, and come back `rejected`
  with a reason (409 for a single event).
* `POST /v1/memories` creates a memory from a namespace and a text, and
  `POST /v1/memories/{id}/revise|archive|restore|erase` change one: the server builds the
  event. `POST /v1/events` takes events built by a producer.
* Every time is RFC 3339 (UTC); an unknown memory is 404 on every read.
"""


def install_openapi(app: FastAPI, registry: Registry) -> None:
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
