"""The HTTP API's request forms, shared by the server (which decodes them) and the clients
(which encode them): points in the log as text, and the bodies of search, backup and replay.

A search body is decoded here into :class:`~memstream.projections.search.SearchQuery`
once (:meth:`SearchRequest.to_query`), and a client builds the body from the same query
(:meth:`SearchRequest.of`), so the two sides cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from memstream.errors import BadRequest, Rejected
from memstream.projections.search import DEFAULT_ALPHA, SearchQuery
from memstream.schemas.events import Context, SubscriptionFilter
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import SearchHit

__all__ = [
    "AckRequest",
    "AddRequest",
    "CONTEXT_HEADERS",
    "ChangeRequest",
    "EraseSubjectRequest",
    "ReviseRequest",
    "hits_body",
    "not_found_body",
    "outcome_body",
    "rejected_body",
    "FORWARDED_HEADER",
    "CHECKED_HEADER",
    "PRINCIPAL_HEADER",
    "BackupRequest",
    "NackRequest",
    "PublicationRequest",
    "ReasonRequest",
    "ReplayRequest",
    "RetentionRequest",
    "SearchRequest",
    "SeekRequest",
    "SubscriptionRequest",
    "UnparkRequest",
    "decode_request",
    "format_point",
    "parse_point",
    "point",
    "time_point",
]

_TIMES = ("created_after", "created_before", "updated_after", "updated_before")


def parse_point(value: str, field: str = "as_of") -> datetime | int:
    """Parse a point in the log given as text: an integer offset, or an RFC 3339 time.

    A time must carry its timezone (``2026-01-01T12:00:00Z`` or ``+02:00``): a naive time
    is ambiguous across machines, so it is refused with the field's name instead of being
    guessed.
    """
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{field}: {value!r} is neither a log offset (an integer) nor an RFC 3339 time "
            "such as 2026-01-01T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise ValueError(
            f"{field}: {value!r} has no timezone; add one, e.g. {text}Z or {text}+00:00"
        )
    return when


def format_point(value: datetime | int) -> str:
    """The query-string form of an offset or a time (the inverse of :func:`parse_point`)."""
    if isinstance(value, bool) or not isinstance(value, int | datetime):
        raise TypeError(f"expected a datetime or an offset (int), not {type(value).__name__}")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("as_of must carry a timezone, e.g. datetime(..., tzinfo=UTC)")
        return value.isoformat()
    return str(value)


def point(value: str | int | None, field: str) -> datetime | int | None:
    """A request's point in the log: an offset, or an RFC 3339 time with its timezone."""
    if value is None or isinstance(value, int):
        return value
    try:
        return parse_point(value, field)
    except ValueError as e:
        raise BadRequest(str(e), field=f"query.{field}") from None


def time_point(value: str | None, field: str) -> datetime | None:
    """A request's time (never an offset)."""
    when = point(value, field)
    if isinstance(when, int):
        raise BadRequest(
            f"{field}: expected an RFC 3339 time such as 2026-01-01T12:00:00Z, not an offset "
            "(use `after` to filter by offset)",
            field=f"query.{field}",
        )
    return when


def decode_request(body: bytes, cls: type[Any]) -> Any:
    """A request body decoded into ``cls``; a :class:`BadRequest` naming the field."""
    try:
        return msgspec.json.decode(body or b"{}", type=cls)
    except msgspec.ValidationError as e:
        text = str(e)
        path = text.split(" - at `", 1)[1].rstrip("`") if " - at `" in text else None
        field = "body" + path[1:] if path else "body"
        raise BadRequest(f"{field}: {text.split(' - at `', 1)[0]}", field=field) from None
    except msgspec.DecodeError as e:
        raise BadRequest(f"the body is not valid JSON ({e})", field="body") from None


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


class RetentionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/retention/run`` (``{}``: one pass, now)."""

    now: Annotated[
        str | None,
        msgspec.Meta(
            description="Run the pass as if it were this time (RFC 3339, with its timezone); "
            "default: the server's clock."
        ),
    ] = None
    dry_run: Annotated[
        bool, msgspec.Meta(description="List what is due without appending anything.")
    ] = False


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
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
        int | str | None,
        msgspec.Meta(description="An offset or an RFC 3339 time (Kafka runtime: a time)."),
    ] = None
    exact: bool = False
    # The bounds go on the float, not on the Optional (msgspec's JSON Schema refuses those).
    alpha: (
        Annotated[
            float,
            msgspec.Meta(
                ge=0.0,
                le=1.0,
                description="Semantic weight of a reciprocal-rank fusion: 1 semantic only, "
                "0 keyword only. Absent: the default ranking (semantic score plus a small "
                "bonus for the BM25 of the memory's own text).",
            ),
        ]
        | None
    ) = None
    query_hints: Annotated[
        bool,
        msgspec.Meta(
            description="Rank memories dated in a period the query names, or said by a "
            "speaker it names, first."
        ),
    ] = True
    min_offset: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    partitions: Annotated[
        list[int] | None,
        msgspec.Meta(description="Kafka runtime: the partitions to search (between workers)."),
    ] = None

    def to_query(self) -> SearchQuery:
        """The query this body asks for (times parsed; a bad one is a :class:`BadRequest`)."""
        return SearchQuery(
            query=self.query, vector=self.vector, namespaces=self.namespaces, k=self.k,
            tags_any=self.tags_any, tags_all=self.tags_all, states=self.states,
            kinds=self.kinds, metadata=self.metadata or {},
            include_archived=self.include_archived, as_of=point(self.as_of, "as_of"),
            exact=self.exact, alpha=DEFAULT_ALPHA if self.alpha is None else self.alpha,
            query_hints=self.query_hints,
            **{name: time_point(getattr(self, name), name) for name in _TIMES},
        )  # fmt: skip

    @classmethod
    def of(
        cls, q: SearchQuery, *, min_offset: int | None = None, partitions: list[int] | None = None
    ) -> SearchRequest:
        """The body that asks for ``q``."""

        def listed(values: Any) -> list[Any] | None:
            return list(values) if values is not None else None

        return cls(
            query=q.query, vector=[float(x) for x in q.vector] if q.vector is not None else None,
            namespaces=listed(q.namespaces), k=q.k, tags_any=listed(q.tags_any) or None,
            tags_all=listed(q.tags_all) or None, states=listed(q.states),
            kinds=listed(q.kinds), metadata=dict(q.metadata) or None,
            include_archived=q.include_archived,
            as_of=format_point(q.as_of) if isinstance(q.as_of, datetime) else q.as_of,
            exact=q.exact, alpha=q.alpha, query_hints=q.query_hints, min_offset=min_offset,
            partitions=partitions,
            **{n: format_point(w) if (w := getattr(q, n)) is not None else None for n in _TIMES},
        )  # fmt: skip


# -- the one-line operations: a memory's fields, the event built by the server ---------------

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
_NAMESPACE = msgspec.Meta(
    min_length=1,
    max_length=512,
    description="The memory's namespace (its tenant): `user/<id>`, `agent/<id>`, `team/<id>`.",
)
_CONTEXT = msgspec.Meta(
    description="The call context (app, session, purpose); default: the X-Memstream-App, "
    "-Session and -Purpose headers."
)
_IN = msgspec.Meta(
    description="The memory's namespace: needed by the Kafka runtime (it names the "
    "partition); an embedded store looks it up."
)


class AddRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/memories``: a new memory. The server builds the ``create`` event
    (event id, schema version, time; the caller as actor)."""

    namespace: Annotated[str, _NAMESPACE]
    text: Annotated[str, msgspec.Meta(description="The content.")]
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    subject: Annotated[
        _Id | None,
        msgspec.Meta(description="Whose data it is (its key seals it). Default: the namespace."),
    ] = None
    memory_id: Annotated[_Id | None, msgspec.Meta(description="Default: a new UUIDv7.")] = None
    context: Annotated[Context | None, _CONTEXT] = None
    ttl_seconds: Annotated[
        Annotated[int, msgspec.Meta(gt=0)] | None,
        msgspec.Meta(description="Expire it this many seconds after it is created."),
    ] = None
    expires_at: Annotated[
        Annotated[datetime, msgspec.Meta(tz=True)] | None,
        msgspec.Meta(description="Expire it at this time (with a timezone)."),
    ] = None
    retention_days: Annotated[
        Annotated[int, msgspec.Meta(gt=0)] | None,
        msgspec.Meta(description="Erase it this many days after it expires."),
    ] = None

    def apply(self, ops: Any) -> Outcome:
        return ops.create(
            self.namespace, self.text, tags=self.tags, metadata=self.metadata,
            subject=self.subject, memory_id=self.memory_id, context=self.context,
            ttl_seconds=self.ttl_seconds, expires_at=self.expires_at,
            retention_days=self.retention_days,
        )  # fmt: skip


class ReviseRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/memories/{memory_id}/revise``: a new version of the content."""

    text: str
    tags: Annotated[list[str] | None, msgspec.Meta(description="Default: unchanged.")] = None
    metadata: Annotated[dict[str, Any] | None, msgspec.Meta(description="Default: unchanged.")] = (
        None
    )
    reason: str | None = None
    expected_version: Annotated[
        Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None,
        msgspec.Meta(description="Refuse the revision unless the memory is at this revision."),
    ] = None
    namespace: Annotated[str | None, _IN] = None
    context: Annotated[Context | None, _CONTEXT] = None

    def apply(self, ops: Any, memory_id: str) -> Outcome:
        return ops.revise(
            memory_id, self.text, tags=self.tags, metadata=self.metadata, reason=self.reason,
            expected_version=self.expected_version, namespace=self.namespace,
            context=self.context,
        )  # fmt: skip


class ChangeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body (optional) of ``POST /v1/memories/{memory_id}/archive``, ``restore`` and
    ``erase``."""

    reason: Annotated[
        str | None,
        msgspec.Meta(description="Why; it stays readable in the audit (even after an erase)."),
    ] = None
    expected_version: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    namespace: Annotated[str | None, _IN] = None
    context: Annotated[Context | None, _CONTEXT] = None

    def apply(self, ops: Any, operation: str, memory_id: str) -> Outcome:
        return getattr(ops, operation)(
            memory_id, reason=self.reason, expected_version=self.expected_version,
            namespace=self.namespace, context=self.context,
        )  # fmt: skip


class EraseSubjectRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body (optional) of ``POST /v1/subjects/{subject}/erase``."""

    reason: str | None = None
    namespace: Annotated[
        str | None,
        msgspec.Meta(description="Where the erase is logged (default: the subject itself)."),
    ] = None
    context: Annotated[Context | None, _CONTEXT] = None

    def apply(self, ops: Any, subject: str) -> Outcome:
        return ops.erase_subject(
            subject, namespace=self.namespace, reason=self.reason, context=self.context
        )


# -- response bodies: one function each, used by the HTTP API and by the CLI's --json ---------


def outcome_body(o: Outcome) -> dict[str, Any]:
    """An operation's outcome as the API answers it (times in RFC 3339)."""
    return o.public()


def rejected_body(e: Rejected) -> dict[str, Any]:
    """The answer to an operation the lifecycle refused (HTTP 409; the CLI exits 1)."""
    public = e.outcome.public() if isinstance(e.outcome, Outcome) else e.outcome
    return {"error": "rejected", "message": str(e), "code": e.code, "outcome": public}


def not_found_body(memory_id: str, version: int | None = None, as_of: Any = None) -> dict[str, Any]:
    """The answer to a read of a memory that does not exist (at that version or point):
    HTTP 404; the CLI exits 1."""
    detail = f" at version {version}" if version is not None else ""
    detail += f" as of {as_of}" if as_of is not None else ""
    return {
        "error": "not_found",
        "message": f"memory {memory_id} does not exist{detail}; check the id, or read its "
        f"audit trail (GET /v1/audit?memory_id=..., `memstream audit --memory ...`) to "
        "see what happened to it",
        "memory_id": memory_id,
    }


def hits_body(hits: list[SearchHit]) -> dict[str, Any]:
    """Search hits as the API answers them."""
    return {"hits": hits}


#: Headers a caller names itself with (its principal, and its call context).
PRINCIPAL_HEADER = "X-Memstream-Principal"
CONTEXT_HEADERS = {
    "app": "X-Memstream-App",
    "session": "X-Memstream-Session",
    "purpose": "X-Memstream-Purpose",
}
#: Header a worker sets on a read it forwards to the partition's owner.
FORWARDED_HEADER = "X-Memstream-Forwarded"
#: Header a trusted caller (a worker holding the cluster token) sets to have the principal
#: it names checked like an authenticated caller: the original caller of a forwarded read.
CHECKED_HEADER = "X-Memstream-Checked"


# -- governance ----------------------------------------------------------------------------


class PrincipalRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/principals``: add a principal, or change one."""

    name: str
    kind: Literal["user", "agent", "service"] = "user"
    groups: list[str] = []
    disabled: bool = False
    reason: str | None = None


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/tokens``: a new token for ``principal`` (answered once)."""

    principal: str
    expires_at: datetime | None = None
    reason: str | None = None


class IssuedToken(msgspec.Struct, kw_only=True):
    """A token just issued: ``token`` is shown this once."""

    token_id: str
    principal: str
    token: str


class GrantRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/grants``."""

    to: Annotated[str, msgspec.Meta(description="A principal, `group:<name>`, or `*`.")]
    modes: Annotated[
        list[str],
        msgspec.Meta(
            description="read, write, audit, reveal, admin; or a preset: read-only, shared, "
            "private."
        ),
    ]
    object: Annotated[
        str, msgspec.Meta(description="`user/alice`, `team/*`, `*`, or `memory:<id>`.")
    ]
    app: str | None = None
    purpose: str | None = None
    session: str | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    grant_id: str | None = None


class GrantAnswer(msgspec.Struct, kw_only=True):
    grant_id: str
    outcome: dict[str, Any]


class PolicyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /v1/policies``: the policy of the namespaces ``object`` selects."""

    object: str
    sensitive: Literal["allow", "tag", "redact", "reject"] = "allow"
    expire_after_idle_days: int | None = None
    erase_after_expired_days: int | None = None
    reason: str | None = None


class RevokeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Optional body of ``DELETE /v1/grants/{id}`` and ``DELETE /v1/tokens/{id}``."""

    reason: str | None = None


# -- pub/sub -------------------------------------------------------------------------------

_START = msgspec.Meta(
    description="Where a new subscription's cursor begins: `now` (default), `beginning`, an "
    "offset (delivered next), or an RFC 3339 time with its timezone."
)
_POSITION = msgspec.Meta(ge=0, le=2**63 - 1)


class SubscriptionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /v1/subscriptions/{name}``: create the subscription, or change it (its
    cursor stays where it is)."""

    filter: Annotated[
        SubscriptionFilter | None,
        msgspec.Meta(description="What it receives (every condition given must hold)."),
    ] = None
    start: Annotated[int | str | None, _START] = None
    view: Annotated[
        bool, msgspec.Meta(description="Each delivery carries the memory's current view.")
    ] = False
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1_000
    ack_timeout: Annotated[
        float,
        msgspec.Meta(
            ge=0.001,
            le=86_400,
            description="Seconds before a delivery not acknowledged is delivered again.",
        ),
    ] = 30.0
    publication: Annotated[
        str | None, msgspec.Meta(description="Subscribe to this publication's memories.")
    ] = None
    description: str | None = None
    owner: Annotated[
        str | None,
        msgspec.Meta(description="The principal it delivers as (default: the caller)."),
    ] = None


class SeekRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/subscriptions/{name}/seek``."""

    start: Annotated[
        int | str,
        msgspec.Meta(
            description="`now`, `beginning`, an offset (delivered next), or an RFC 3339 time."
        ),
    ]


class AckRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/subscriptions/{name}/ack``: ``positions``, or ``upto``."""

    positions: Annotated[
        list[Annotated[int, _POSITION]] | None,
        msgspec.Meta(description="Acknowledge these deliveries (their positions)."),
    ] = None
    upto: Annotated[
        Annotated[int, msgspec.Meta(ge=-1, le=2**63 - 1)] | None,
        msgspec.Meta(description="Acknowledge every delivery in flight at or below it."),
    ] = None

    def check(self) -> None:
        if (self.positions is None) == (self.upto is None):
            raise BadRequest(
                "send either positions (a list of delivery positions) or upto (a position), "
                "and not both",
                field="body.positions",
            )


class NackRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/subscriptions/{name}/nack``: a delivery the consumer cannot
    handle."""

    position: Annotated[int, _POSITION]
    reason: str | None = None
    park: Annotated[
        bool,
        msgspec.Meta(
            description="Park it (kept aside, never delivered again by itself); false: "
            "deliver it again at once."
        ),
    ] = True


class UnparkRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /v1/subscriptions/{name}/unpark``: parked deliveries handled by hand."""

    positions: list[Annotated[int, _POSITION]]


class PublicationRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /v1/publications/{name}``: publish a namespace's memories under terms
    (again: revise the terms)."""

    namespace: Annotated[str, msgspec.Meta(min_length=1, description="The namespace published.")]
    to: Annotated[
        list[str],
        msgspec.Meta(description="Who may subscribe: principals, `group:<name>`, `*`."),
    ]
    tag: Annotated[str | None, msgspec.Meta(description="Only memories with this tag.")] = None
    memory_id: Annotated[str | None, msgspec.Meta(description="Only this memory.")] = None
    expires_at: Annotated[
        Annotated[datetime, msgspec.Meta(tz=True)] | None,
        msgspec.Meta(description="Nothing is delivered after it (RFC 3339, with timezone)."),
    ] = None
    max_deliveries: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None,
        msgspec.Meta(description="Deliveries per period per subscriber."),
    ] = None
    period_seconds: Annotated[int, msgspec.Meta(ge=1, le=10 * 365 * 86_400)] = 86_400
    redact: Annotated[
        bool, msgspec.Meta(description="Deliver texts with their sensitive values replaced.")
    ] = False
    description: str | None = None


class ReasonRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Optional body of ``POST /v1/publications/{name}/withdraw``."""

    reason: str | None = None
